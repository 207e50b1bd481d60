"""`wa-keeper demo --accounts 3 --fast` inside the emulators `make test` started (issue #8, item 1).

The demo reuses the emulators named by the environment, runs its whole fault
script with real processes, and writes its final table as JSON. This test
checks what the final table claims and, independently, that no process of
the run is left: every process the demo started inherits a marker variable
of this test, and none may carry it once the demo has exited.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from google.cloud import firestore

from tests import emulator

ROOT = Path(__file__).resolve().parents[2]
TEST_MARKER = "WA_KEEPER_DEMO_TEST"


def processes_with(marker: str) -> list[int]:
    needle = marker.encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in entry.read_bytes().split(b"\0"):
                state = (entry.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.parent.name))
        except OSError:
            continue
    return found


def test_the_short_demo_recovers_every_account_without_a_qr_but_the_logged_out_one(
    tmp_path: Path, clean_firestore: firestore.Client
) -> None:
    emulator.require_emulators()
    assert os.environ.get("FIREBASE_EMULATOR_HUB"), (
        "the demo needs the functions emulator (make test starts it)"
    )
    marker = f"{TEST_MARKER}={uuid.uuid4().hex}"
    report_path = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "demo",
            "--accounts",
            "3",
            "--fast",
            "--json-report",
            str(report_path),
        ],
        env={
            **os.environ,
            "GOOGLE_CLOUD_PROJECT": emulator.project_id(),
            TEST_MARKER: marker.split("=", 1)[1],
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    report: dict[str, Any] = json.loads(report_path.read_text())
    assert report["ok"] is True and report["problems"] == [], output

    accounts = {a["account"]: a for a in report["accounts"]}
    assert sorted(accounts) == ["acct-01", "acct-02", "acct-03"]
    logged_out = [a for a, row in accounts.items() if any(f["fault"] == "real_logout" for f in row["faults"])]
    assert len(logged_out) == 1, report
    for account, row in accounts.items():
        assert row["faults"], f"{account} went through no fault"
        assert all(f["ok"] for f in row["faults"]), row
        assert row["live"] is True, row  # logged in at the simulated WhatsApp at the end
        if account in logged_out:
            assert row["needed_qr"] is True and row["same_device"] is False, row
        else:
            assert row["needed_qr"] is False and row["same_device"] is True, row
            assert not any(f["qr_shown"] for f in row["faults"]), row
    faults = {f["fault"] for row in accounts.values() for f in row["faults"]}
    assert {"transient_logout", "real_logout", "stream_replaced"} <= faults

    assert report["processes_left"] == []
    assert not list(tmp_path.glob("wa-keeper-demo-*")), (
        "a successful run removes its folder (sessions, key, logs)"
    )
    assert processes_with(marker) == [], "a process of the demo outlived it"
    assert "every account recovered without a QR code except the one really logged out" in done.stdout
