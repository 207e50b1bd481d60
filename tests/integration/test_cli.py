"""The operator's CLI run as a subprocess, as an operator runs it: output and exit codes.

`status`, `pair`, `reconnect`, `restore` and `wipe` against the emulators and a
real `wa-keeper run` connector (sim transport); the error cases against the
emulators alone and against a closed port (an unreachable Firestore).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from prometheus_client.parser import text_string_to_metric_families

from tests import emulator
from tests.integration.stack_support import ROOT, Stack, stack, wait_until
from tests.pubsub_pull import closed_port
from wa_wire import Collections
from wa_wire.codec import parse_timestamp

A = "acct-cli-ops"


def cli(*args: str, cwd: Path, timeout_s: float = 180, **extra: str) -> subprocess.CompletedProcess[str]:
    """`python -m connector ARGS` with the emulators of this test run (or `extra` overrides)."""
    return subprocess.run(
        [sys.executable, "-m", "connector", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=cli_env(**extra),
        cwd=cwd,
        check=False,
    )


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, GOOGLE_CLOUD_PROJECT=emulator.project_id(), PYTHONPATH=str(ROOT), **extra)
    env.pop("WA_KEEPER_BACKUP_KEY_FILE", None)
    return env


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The last stderr line, checked to be the CLI's one-line error (no traceback anywhere)."""
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("wa-keeper: "), done.stderr
    return last


def commands_of(client: firestore.Client, account: str) -> list[dict[str, Any]]:
    docs = (
        client.collection(Collections.COMMANDS)
        .where(filter=FieldFilter("account_id", "==", account))
        .stream()
    )
    return [d.to_dict() or {} for d in docs]


@pytest.fixture
def ops_stack(tmp_path: Path, clean_firestore: firestore.Client) -> Iterator[Stack]:
    with stack(tmp_path, clean_firestore) as running:
        yield running


# ---------------------------------------------------------------- status


def test_status_prints_every_account_as_a_table_and_as_json(
    tmp_path: Path, clean_firestore: firestore.Client
) -> None:
    now = datetime.now(UTC)
    clean_firestore.document(f"{Collections.ACCOUNTS}/acct-b").set(
        {
            "status": "connected",
            "holder": "conn-1",
            "lease_epoch": 4,
            "backup": {"generation": 7, "at": now - timedelta(seconds=30), "good": True},
            "strikes": {"count": 1},
            "status_reason": "connected as 15550001111",
        }
    )
    clean_firestore.document(f"{Collections.ACCOUNTS}/acct-a").set(
        {"status": "needs_qr", "status_reason": "no session and no backup"}
    )
    as_json = cli("status", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [(r["account"], r["status"], r["holder"], r["epoch"], r["backup"]) for r in rows] == [
        ("acct-a", "needs_qr", "-", "-", "-"),
        ("acct-b", "connected", "conn-1", "4", "7"),
    ]
    age = int(rows[1]["backup age"].removesuffix(" s"))
    assert 30 <= age < 300 and rows[1]["strikes"] == "1"

    table = cli("status", cwd=tmp_path, COLUMNS="160")
    assert table.returncode == 0, table.stderr
    assert "2 accounts" in table.stdout
    acct_b = next(line for line in table.stdout.splitlines() if "acct-b" in line)
    assert "connected" in acct_b and "conn-1" in acct_b


def test_status_of_an_empty_project_says_zero_accounts(
    tmp_path: Path, clean_firestore: firestore.Client
) -> None:
    done = cli("status", cwd=tmp_path)
    assert done.returncode == 0 and "0 accounts" in done.stdout


# ---------------------------------------------------------------- errors: one line each


ALL_COMMANDS = [
    ("status",),
    ("pair", A, "--timeout", "5"),
    ("reconnect", A),
    ("release", A),
    ("restore", A),
    ("wipe", A, "--yes"),
    ("backups", A),
]


@pytest.mark.parametrize("args", ALL_COMMANDS, ids=lambda args: args[0])
def test_an_unreachable_firestore_is_one_line_and_exit_1(tmp_path: Path, args: tuple[str, ...]) -> None:
    port = closed_port()
    done = cli(*args, cwd=tmp_path, FIRESTORE_EMULATOR_HOST=f"127.0.0.1:{port}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert error_line(done) == (
        f"wa-keeper: Firestore unreachable (127.0.0.1:{port}, project {emulator.project_id()}): "
        "ServiceUnavailable"
    )
    assert done.stdout == ""


@pytest.mark.parametrize("verb", ["reconnect", "release", "restore", "wipe"])
def test_an_unknown_account_is_one_line_exit_1_and_issues_nothing(
    tmp_path: Path, clean_firestore: firestore.Client, verb: str
) -> None:
    args = (verb, "acct-nobody", "--yes") if verb == "wipe" else (verb, "acct-nobody")
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "wa-keeper: unknown account 'acct-nobody' (no accounts/acct-nobody document)"
    ]
    assert list(clean_firestore.collection(Collections.COMMANDS).stream()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("wipe", A), f"wa-keeper: wipe deletes {A}'s disk session and every backup"),
        (("reconnect", A, "--timeout", "0"), "argument --timeout: must be between 0 and 86400 seconds"),
        (("restore", A, "--timeout", "soon"), "argument --timeout: not a number of seconds: 'soon'"),
        (("wipe",), "the following arguments are required: account"),
        (("reconnect", A, "--now"), "unrecognized arguments: --now"),
    ],
    ids=["wipe without --yes", "zero timeout", "timeout not a number", "no account", "unknown option"],
)
def test_usage_errors_exit_2_and_issue_nothing(
    tmp_path: Path, clean_firestore: firestore.Client, args: tuple[str, ...], message: str
) -> None:
    clean_firestore.document(f"{Collections.ACCOUNTS}/{A}").set({"status": "connected"})
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.strip().splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert commands_of(clean_firestore, A) == []


@pytest.mark.parametrize("verb", ["reconnect", "release", "restore", "wipe"])
def test_a_bad_account_id_is_one_line_and_issues_nothing(
    tmp_path: Path, clean_firestore: firestore.Client, verb: str
) -> None:
    args = (verb, "../etc", "--yes") if verb == "wipe" else (verb, "../etc")
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 1
    assert error_line(done) == "wa-keeper: account id '../etc' cannot be a folder name under SESSIONS_PATH"
    assert list(clean_firestore.collection(Collections.COMMANDS).stream()) == []


def test_nobody_claims_the_command_it_expires_and_the_wait_ends_with_exit_1(
    tmp_path: Path, clean_firestore: firestore.Client
) -> None:
    clean_firestore.document(f"{Collections.ACCOUNTS}/{A}").set({"status": "unattended"})
    done = cli("wipe", A, "--yes", "--timeout", "1.5", cwd=tmp_path)
    assert done.returncode == 1
    assert error_line(done).startswith(
        f"wa-keeper: wipe of {A} did not finish within 1.5 s: no connector claimed it, so it expired unrun"
    )
    assert "no connector holds it now" in done.stderr
    (command,) = commands_of(clean_firestore, A)
    assert command["action"] == "wipe" and command["status"] == "pending"
    assert command["issued_by"].startswith("cli:")
    issued = datetime.fromisoformat(command["issued_at"])
    expires = datetime.fromisoformat(command["expires_at"])
    assert expires - issued == timedelta(seconds=1.5), "the command expires when the wait ends"


# ---------------------------------------------------------------- against a running connector


def pair_through_cli(e2e: Stack, cwd: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """`wa-keeper pair` in the background while the test scans its QR at the sim-server."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector", "pair", A, "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=cwd,
    )

    def scanned() -> bool:
        _status, pending = e2e.sim_api("GET", "/api/qr")
        if not any(p["account"] == A for p in pending["pending"]):
            return False
        status, _body = e2e.sim_api("POST", "/api/scan", {"account": A})
        return status == 200

    try:
        wait_until("a QR code waiting at the sim-server", scanned, 90)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), err


def good_generation(e2e: Stack) -> int | None:
    backup = e2e.account(A).get("backup") or {}
    return int(backup["generation"]) if backup.get("good") else None


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in /metrics text (parsed by prometheus-client); 0 when absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def assert_metrics_counted(e2e: Stack, connector_id: str) -> None:
    """What the operator's commands did shows on the connector's /metrics."""
    _proc, port = e2e.connectors[connector_id]

    def scraped() -> str | None:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        connected = metric(text, "wa_keeper_accounts", status="connected") == 1
        renewed = metric(text, "wa_keeper_lease_renew_seconds_count") >= 1  # every ttl/3 (5 s)
        aged = f'wa_keeper_backup_age_seconds{{account="{A}"}}' in text
        return text if connected and renewed and aged else None

    text = wait_until("the health loop's gauges on /metrics", scraped, 30)
    assert metric(text, "wa_keeper_reconnects_total", account=A) >= 1
    assert metric(text, "wa_keeper_worker_restarts_total", account=A) >= 2  # reconnect, restore
    assert metric(text, "wa_keeper_restores_total", source="backup", outcome="ok") >= 1
    assert metric(text, "wa_keeper_backup_uploaded_bytes_total") > 0
    assert metric(text, "wa_keeper_lease_renew_seconds_count") >= 1
    assert metric(text, "wa_keeper_event_loop_lag_seconds_count") >= 1  # probed every 50 ms
    assert 0 <= metric(text, "wa_keeper_backup_age_seconds", account=A) < 300


def test_pair_reconnect_restore_and_wipe_against_a_running_connector(
    ops_stack: Stack, tmp_path: Path
) -> None:
    e2e = ops_stack
    e2e.start_connector("conn-ops")

    paired, err = pair_through_cli(e2e, tmp_path)
    assert paired.returncode == 0, err
    jid = e2e.account(A)["jid"]
    assert paired.stdout.strip().splitlines()[-1] == f"{A} paired as {jid}"
    assert "▀" in paired.stdout or "█" in paired.stdout, "the QR code is drawn in the terminal"
    assert "scan with WhatsApp" in err

    generation = wait_until("a good backup", lambda: good_generation(e2e), 30)

    reconnected = cli("reconnect", A, "--timeout", "60", cwd=tmp_path)
    assert reconnected.returncode == 0, reconnected.stderr
    assert reconnected.stdout.startswith(f"reconnect of {A} done")
    progress = reconnected.stderr.splitlines()
    # the claim is shown when the listener sees it (a fast connector may be done first)
    assert f"reconnect of {A}: done by conn-ops" in progress, "progress names the connector"
    e2e.wait_status(A, "connected", 60)

    restored = cli("restore", A, "--generation", str(generation), "--timeout", "60", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"restore of {A} done: restored generation {generation}")
    e2e.wait_status(A, "connected", 60)

    released = cli("release", A, "--timeout", "60", cwd=tmp_path)
    assert released.returncode == 0, released.stderr
    assert released.stdout.startswith(f"release of {A} done: released in"), released.stdout
    assert "takes it back after 10 s free" in released.stdout
    e2e.wait_status(A, "connected", 60)  # the only connector takes it back

    assert_metrics_counted(e2e, "conn-ops")

    missing = cli("restore", A, "--generation", "999", "--timeout", "60", cwd=tmp_path)
    assert missing.returncode == 1
    assert error_line(missing).startswith(f"wa-keeper: restore of {A} failed: ")
    assert "999" in error_line(missing)

    wiped = cli("wipe", A, "--yes", "--timeout", "60", cwd=tmp_path)
    assert wiped.returncode == 0, wiped.stderr
    assert wiped.stdout.startswith(f"wipe of {A} done: wiped the disk session and")
    e2e.wait_status(A, "needs_qr", 30)
    assert not (e2e.sessions_path("conn-ops") / A / "session.db").exists()
    issuers = {c["issued_by"] for c in commands_of(e2e.client, A)}
    assert len(issuers) == 1 and issuers.pop().startswith("cli:")


def test_pair_that_nobody_scans_times_out_with_exit_1(ops_stack: Stack, tmp_path: Path) -> None:
    ops_stack.start_connector("conn-ops")
    done = cli("pair", A, "--timeout", "4", cwd=tmp_path)
    assert done.returncode == 1
    assert error_line(done) == f"wa-keeper: {A} was not paired within 4 s"
    (command,) = commands_of(ops_stack.client, A)
    lifetime = parse_timestamp(command["expires_at"]) - parse_timestamp(command["issued_at"])
    assert lifetime.total_seconds() == 4, "a pair command must not outlive the wait for its QR"
