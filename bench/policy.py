"""Transient logouts through the policy: time from the `logged_out` event to connected again.

N accounts are paired through one connector (sim transport); the functions are
warmed by one untimed trial; then each account gets one 401 on its live
connection (sim-server `logout` fault, the device stays linked) and the clock
runs from the event's time (`last_event.at`, written by the function from the
connector's event) until the account document shows `connected` again:
event -> Pub/Sub -> function (policy: restore command) -> connector claims it,
restores the newest good generation, reconnects. One trial per account because
a third logout within the strike window is, by policy, a wipe.

Needs the whole emulator suite (functions included), e.g.:
  scripts/firebase emulators:exec --project demo-wa-keeper --only firestore,pubsub,functions \
    ".venv/bin/python bench/policy.py --trials 50"
Figures are printed, never asserted.

Measured 2026-11-26 on the 2-vCPU development machine, 50 trials after a warm-up
(0.43 s): p50 0.42 s, p95 0.71 s (target p95 <= 3 s), max 64.5 s. The one slow
trial waited for the inbox's reconciliation (then every 60 s, now 10 s): the
emulator's command listener missed that restore command under load.
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from google.cloud import firestore

from tests import emulator
from tests.integration.stack_support import Stack, wait_until
from wa_wire import DEFAULT_TOPIC, Collections
from wa_wire.codec import parse_timestamp


def trial(stack: Stack, account: str, deadline_s: float = 120) -> float:
    """One transient logout; seconds from the logged_out event to connected again."""
    done = threading.Event()
    seen: dict[str, Any] = {}

    def on_snapshot(docs: list[Any], _changes: Any, _read_time: Any) -> None:
        for doc in docs:
            data = doc.to_dict() or {}
            last = data.get("last_event") or {}
            if last.get("type") == "logged_out" and "logout_at" not in seen:
                seen["logout_at"] = parse_timestamp(last["at"])
            if "logout_at" in seen and "left" in seen and data.get("status") == "connected":
                seen["connected_at"] = datetime.now(UTC)
                done.set()
            if data.get("status") != "connected":
                seen["left"] = True

    watch = stack.client.document(f"{Collections.ACCOUNTS}/{account}").on_snapshot(on_snapshot)
    try:
        stack.fault(account, fault="logout")
        if not done.wait(deadline_s):
            raise RuntimeError(f"{account}: not connected again within {deadline_s} s: {seen}")
    finally:
        watch.unsubscribe()
    return float((seen["connected_at"] - seen["logout_at"]).total_seconds())


def good_backup(stack: Stack, account: str) -> bool:
    return bool((stack.account(account).get("backup") or {}).get("good"))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=50)
    args = parser.parse_args()
    emulator.require_emulators()
    emulator.reset_firestore()
    tmp = Path(tempfile.mkdtemp(prefix="wa-keeper-bench-policy-"))
    stack = Stack(tmp=tmp, topic=DEFAULT_TOPIC, client=firestore.Client(project=emulator.project_id()))
    accounts = [f"policy-{n:03d}" for n in range(args.trials + 1)]
    ok = False
    try:
        stack.start_sim("--churn-ms", "2000")
        stack.start_connector("bench-policy", WA_KEEPER_BACKUP_INTERVAL_S="2")
        for account in accounts:
            stack.pair(account)
        for account in accounts:
            wait_until(f"a good backup of {account}", functools.partial(good_backup, stack, account), 60)
        warm = trial(stack, accounts[0])
        print(f"warm-up trial (function process start included): {warm:.2f} s", flush=True)
        times = []
        for account in accounts[1:]:
            times.append(trial(stack, account))
        print(f"\n{len(times)} transient logouts (401, device still linked), warm functions")
        print(
            f"  logged_out event -> connected again: p50 {percentile(times, 0.5):.2f} s, "
            f"p95 {percentile(times, 0.95):.2f} s, max {max(times):.2f} s (target p95 <= 3 s)"
        )
        ok = True
    finally:
        stack.close()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"failed: the connector and sim-server logs are kept in {tmp}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
