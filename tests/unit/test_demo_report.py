"""The demo's final verdict by table: it succeeds only when every account is back as the script says."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

import pytest
from rich.console import Console

from connector.demo.observe import AccountDoc
from connector.demo.report import DemoReport, problems, summarize, table, to_json
from connector.demo.runner import AccountOutcome, StepResult
from connector.demo.script import SCRIPT, Fault, Phase, Step

ACCOUNTS = ["acct-01", "acct-02", "acct-03"]
STEP = {s.fault: s for s in SCRIPT}


def outcome(step: Step, ok: bool = True, qr: bool = False, seconds: float | None = 3.0) -> AccountOutcome:
    phase = Phase.RECOVERED if ok else Phase.WAITING
    return AccountOutcome(
        step.title, step.fault, ok, phase, "restored gen 1" if ok else "not settled", seconds, qr
    )


def good_report() -> DemoReport:
    """acct-01 on A (wiped disk) then a transient logout; acct-02 on B then really logged out; acct-03 replaced."""
    devices = {a: f"1555000000{n}:1@s.whatsapp.net" for n, a in enumerate(ACCOUNTS, 1)}
    steps = [
        StepResult(
            STEP[Fault.WIPE_DISK_AND_RESTART],
            ["acct-01"],
            {"acct-01": outcome(STEP[Fault.WIPE_DISK_AND_RESTART])},
        ),
        StepResult(
            STEP[Fault.KILL_CONNECTOR],
            ["acct-02", "acct-03"],
            {a: outcome(STEP[Fault.KILL_CONNECTOR]) for a in ("acct-02", "acct-03")},
        ),
        StepResult(
            STEP[Fault.TRANSIENT_LOGOUT], ["acct-01"], {"acct-01": outcome(STEP[Fault.TRANSIENT_LOGOUT])}
        ),
        StepResult(
            STEP[Fault.REAL_LOGOUT], ["acct-02"], {"acct-02": outcome(STEP[Fault.REAL_LOGOUT], qr=True)}
        ),
        StepResult(
            STEP[Fault.STREAM_REPLACED], ["acct-03"], {"acct-03": outcome(STEP[Fault.STREAM_REPLACED])}
        ),
    ]
    final = dict(devices, **{"acct-02": "15550000002:2@s.whatsapp.net"})
    docs = {a: AccountDoc(a, status="connected", holder="keeper-a") for a in ACCOUNTS}
    return DemoReport(list(ACCOUNTS), steps, devices, final, docs, dict.fromkeys(ACCOUNTS, True))


def test_a_good_run_has_no_problems() -> None:
    report = good_report()
    assert problems(report) == []
    rows = {r.account: r for r in summarize(report)}
    assert [r.needed_qr for r in rows.values()] == [False, True, False]
    assert [r.same_device for r in rows.values()] == [True, False, True]
    assert all(r.ok for r in rows.values())


def _fail_kill(report: DemoReport) -> None:
    report.steps[1].outcomes["acct-03"] = outcome(STEP[Fault.KILL_CONNECTOR], ok=False)


def _qr_on_transient(report: DemoReport) -> None:
    report.steps[2].outcomes["acct-01"] = outcome(STEP[Fault.TRANSIENT_LOGOUT], qr=True)


def _no_qr_on_real_logout(report: DemoReport) -> None:
    report.steps[3].outcomes["acct-02"] = outcome(STEP[Fault.REAL_LOGOUT], qr=False)


def _device_changed(report: DemoReport) -> None:
    report.final_devices["acct-03"] = "15550000003:2@s.whatsapp.net"


def _not_logged_in(report: DemoReport) -> None:
    report.final_live["acct-01"] = False


def _no_real_logout(report: DemoReport) -> None:
    del report.steps[3]


def _process_left(report: DemoReport) -> None:
    report.processes_left = [4242]


def _stopped_early(report: DemoReport) -> None:
    report.error = "sim-server exited unexpectedly"


@pytest.mark.parametrize(
    ("spoil", "needle"),
    [
        (_fail_kill, "acct-03: keeper-b: killed"),
        (_qr_on_transient, "acct-01 needed a QR code"),
        (_no_qr_on_real_logout, "acct-02 was really logged out but no QR was shown"),
        (_device_changed, "acct-03 is not on the device it was paired as"),
        (_not_logged_in, "acct-01 is not logged in at the end"),
        (_no_real_logout, "no account was really logged out"),
        (_process_left, "processes left behind: [4242]"),
        (_stopped_early, "the demo stopped early: sim-server exited unexpectedly"),
    ],
)
def test_each_kind_of_failure_is_a_problem(spoil: Callable[[DemoReport], None], needle: str) -> None:
    report = good_report()
    spoil(report)
    found = problems(report)
    assert any(needle in line for line in found), found


def test_an_unknown_final_device_is_shown_as_unknown_not_as_a_failure() -> None:
    report = dataclasses.replace(good_report(), final_devices={}, final_live={})
    assert {r.same_device for r in summarize(report)} == {None}
    assert {r.live for r in summarize(report)} == {None}
    assert problems(report) == []


def test_json_report_says_the_same_as_the_table() -> None:
    report = good_report()
    _qr_on_transient(report)
    data = json.loads(json.dumps(to_json(report, problems(report))))
    assert data["ok"] is False
    by_account = {a["account"]: a for a in data["accounts"]}
    assert by_account["acct-01"]["needed_qr"] is True
    assert [f["fault"] for f in by_account["acct-01"]["faults"]] == [
        "wipe_disk_and_restart",
        "transient_logout",
    ]
    assert by_account["acct-02"]["same_device"] is False
    assert [s["targets"] for s in data["steps"]][1] == ["acct-02", "acct-03"]


def test_the_table_shows_every_account_with_its_faults_and_times() -> None:
    console = Console(record=True, width=200)
    console.print(table(good_report()))
    text = console.export_text()
    for account in ACCOUNTS:
        assert account in text
    assert "real logout (device unlinked)" in text
    assert "3.0 s" in text
    assert text.count("no QR") == 2
    assert text.count("logged in; connected @ keeper-a") == 3
