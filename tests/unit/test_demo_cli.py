"""`wa-keeper demo` bad input: usage errors exit 2, a demo that cannot start exits 1 with one clear line.

These start nothing: each fails before the first process would be spawned.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector.cli import EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--accounts", "2"], "must be 3..50"),
        (["--accounts", "51"], "must be 3..50"),
        (["--accounts", "ten"], "not an integer"),
        (["--json-report", "/no/such/folder/report.json"], "does not exist"),
        (["--json-report", "/tmp"], "is a folder"),
        (["--fats"], "unrecognized arguments: --fats"),
    ],
)
def test_usage_errors_exit_2_and_name_the_problem(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["demo", *argv])
    assert stopped.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err


def demo(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_EMULATOR_HOST") and k != "FIREBASE_EMULATOR_HUB"
    }
    return subprocess.run(
        [sys.executable, "-m", "connector", "demo", "--fast", *args],
        env={**clean, "TMPDIR": str(tmp_path), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_missing_emulator_config_stops_the_demo_with_one_line(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = demo(tmp_path, "--firebase-config", str(tmp_path / "nope.json"), "--json-report", str(report))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cannot read the emulator config" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert '"ok": false' in report.read_text()
    assert not list(tmp_path.glob("wa-keeper-demo-*")), "a run that started nothing leaves no folder"


def test_firestore_without_pubsub_in_the_environment_stops_the_demo(tmp_path: Path) -> None:
    done = demo(tmp_path, FIRESTORE_EMULATOR_HOST="127.0.0.1:1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PUBSUB_EMULATOR_HOST is not" in done.stdout
    assert "processes of this run still alive: 0" in done.stdout
