"""The final table: per account what happened, whether it needed a QR, how long each recovery took.

`summarize` and `problems` are pure: the same report always gives the same
rows and the same verdict. The demo exits 0 only when `problems` is empty:
every account came back without a QR except the one really logged out, each
on its own device, and no process of the run is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table
from rich.text import Text

from connector.demo.observe import AccountDoc
from connector.demo.runner import AccountOutcome, StepResult
from connector.demo.script import Fault


@dataclass
class DemoReport:
    accounts: list[str]
    steps: list[StepResult] = field(default_factory=list)
    initial_devices: dict[str, str] = field(default_factory=dict)  # account -> jid after pairing
    final_devices: dict[str, str] = field(default_factory=dict)
    final_docs: dict[str, AccountDoc] = field(default_factory=dict)
    final_live: dict[str, bool] = field(default_factory=dict)  # logged in at the simulated WhatsApp
    processes_left: list[int] = field(default_factory=list)
    processes_killed_at_end: list[int] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class AccountSummary:
    account: str
    outcomes: tuple[AccountOutcome, ...]
    needed_qr: bool
    same_device: bool | None  # None: not known (the run stopped before it was checked)
    final_status: str
    holder: str
    live: bool | None

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and all(o.ok for o in self.outcomes)


def summarize(report: DemoReport) -> list[AccountSummary]:
    rows = []
    for account in report.accounts:
        outcomes = tuple(r.outcomes[account] for r in report.steps if account in r.outcomes)
        doc = report.final_docs.get(account)
        initial, final = report.initial_devices.get(account), report.final_devices.get(account)
        rows.append(
            AccountSummary(
                account=account,
                outcomes=outcomes,
                needed_qr=any(o.qr_shown for o in outcomes),
                same_device=None if initial is None or final is None else initial == final,
                final_status=doc.status if doc else "-",
                holder=(doc.holder or "-") if doc else "-",
                live=report.final_live.get(account),
            )
        )
    return rows


def problems(report: DemoReport) -> list[str]:
    """Everything that keeps the run from counting as a success; empty means success."""
    found = [] if report.error is None else [f"the demo stopped early: {report.error}"]
    logged_out = {a for r in report.steps if r.step.fault is Fault.REAL_LOGOUT for a in r.outcomes}
    for row in summarize(report):
        for outcome in row.outcomes:
            if not outcome.ok:
                found.append(f"{row.account}: {outcome.step}: {outcome.detail}")
        if row.needed_qr and row.account not in logged_out:
            found.append(f"{row.account} needed a QR code")
        if row.account not in logged_out and row.outcomes and row.same_device is False:
            found.append(f"{row.account} is not on the device it was paired as")
        if row.live is False:
            found.append(f"{row.account} is not logged in at the end ({row.final_status})")
        if row.account in logged_out and not row.needed_qr:
            found.append(f"{row.account} was really logged out but no QR was shown")
    if report.steps and not logged_out:
        found.append("no account was really logged out")
    if report.processes_left:
        found.append(f"processes left behind: {report.processes_left}")
    return found


def _seconds(outcome: AccountOutcome) -> str:
    return "-" if outcome.seconds is None else f"{outcome.seconds:.1f} s"


def table(report: DemoReport) -> Table:
    result = Table(title="What happened to each account", title_justify="left", show_lines=True)
    for header in ("account", "fault", "outcome", "QR", "recovery", "device", "at the end"):
        result.add_column(header)
    for row in summarize(report):
        faults = "\n".join(o.step for o in row.outcomes) or "-"
        outcomes = "\n".join(("ok: " if o.ok else "FAILED: ") + o.detail for o in row.outcomes) or "-"
        times = "\n".join(_seconds(o) for o in row.outcomes) or "-"
        qr = Text("QR", style="red") if row.needed_qr else Text("no QR", style="green")
        device = {True: "same", False: "new", None: "?"}[row.same_device]
        style = "green" if row.ok else "red"
        online = {True: "logged in", False: "NOT logged in", None: "?"}[row.live]
        final = f"{online}; {row.final_status} @ {row.holder}"
        result.add_row(row.account, faults, Text(outcomes, style=style), qr, times, device, final)
    return result


def to_json(report: DemoReport, run_problems: Sequence[str]) -> dict[str, Any]:
    return {
        "ok": not run_problems,
        "problems": list(run_problems),
        "accounts": [
            {
                "account": row.account,
                "ok": row.ok,
                "needed_qr": row.needed_qr,
                "same_device": row.same_device,
                "final_status": row.final_status,
                "holder": row.holder,
                "live": row.live,
                "faults": [
                    {
                        "step": o.step,
                        "fault": o.fault.value,
                        "ok": o.ok,
                        "phase": o.phase.value,
                        "detail": o.detail,
                        "seconds": o.seconds,
                        "qr_shown": o.qr_shown,
                    }
                    for o in row.outcomes
                ],
            }
            for row in summarize(report)
        ],
        "steps": [
            {"step": r.step.title, "fault": r.step.fault.value, "targets": r.targets, "note": r.note}
            for r in report.steps
        ],
        "processes_left": report.processes_left,
        "processes_killed_at_end": report.processes_killed_at_end,
        "error": report.error,
    }
