"""connector/workers/lifeline.py: a worker asks to die with its supervisor, after exec."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import ctypes\n"
    "from connector.workers.lifeline import die_with_supervisor\n"
    "die_with_supervisor()\n"
    "signal = ctypes.c_int()\n"
    "ctypes.CDLL(None).prctl(2, ctypes.byref(signal))  # PR_GET_PDEATHSIG\n"
    "print(signal.value)\n"
)


def run_probe(supervisor_pid: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WA_KEEPER_SUPERVISOR_PID": str(supervisor_pid), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_worker_gets_sigterm_when_its_supervisor_dies() -> None:
    done = run_probe(os.getpid())  # this test process is the probe's parent
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "15"


def test_a_worker_whose_supervisor_is_already_gone_exits_at_once() -> None:
    done = run_probe(os.getpid() + 1_000_000)  # not its parent: the supervisor died and it was adopted
    assert done.returncode == 0
    assert done.stdout == ""
    assert "the supervisor is gone before this worker started" in done.stderr
