"""The demo's process handling with real processes: groups stopped by pid, leftovers found by marker."""

from __future__ import annotations

import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.demo import processes
from connector.demo.processes import MARKER, Child

# A parent that starts a grandchild in its own process group, prints its pid, then waits;
# on SIGTERM it exits at once, leaving the grandchild behind (as firebase-tools leaves its function workers).
PARENT = """
import signal, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
time.sleep(120)
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""


def wait_for(what: str, probe: Callable[[], object], within_s: float = 20) -> None:
    deadline = time.monotonic() + within_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within_s} s")
        time.sleep(0.02)


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def started(tmp_path: Path, run_id: str) -> Iterator[list[Child]]:
    children: list[Child] = []
    yield children
    for child in children:  # never leave a test process behind, whatever the test did
        processes.signal_group(child.pid, signal.SIGKILL)
        child.popen.wait(10)


def start(tmp_path: Path, run_id: str, code: str, started: list[Child]) -> Child:
    env = {"PATH": "/usr/bin:/bin", MARKER: run_id}
    child = processes.spawn(
        "test", [sys.executable, "-c", code], env, tmp_path / f"{len(started)}.log", tmp_path
    )
    started.append(child)
    return child


def first_line(child: Child) -> str:
    wait_for("first line", lambda: child.log.read_text().strip())
    return child.log.read_text().splitlines()[0]


def test_stop_ends_the_child_and_whatever_it_left_in_its_group(
    tmp_path: Path, run_id: str, started: list[Child]
) -> None:
    parent = start(tmp_path, run_id, PARENT, started)
    grandchild = int(first_line(parent))
    assert processes.marked_processes(run_id) == {parent.pid, grandchild}
    assert processes.group_members(parent.pid) == {parent.pid, grandchild}

    processes.stop(parent)

    assert not parent.alive()
    assert not processes.pid_alive(grandchild)
    assert processes.marked_processes(run_id) == set()


def test_stop_kills_a_child_that_ignores_the_signal(
    tmp_path: Path, run_id: str, started: list[Child]
) -> None:
    child = start(tmp_path, run_id, STUBBORN, started)
    first_line(child)
    processes.stop(child, within_s=0.5)
    assert child.popen.returncode == -signal.SIGKILL


def test_a_second_stop_request_sends_nothing(tmp_path: Path, run_id: str, started: list[Child]) -> None:
    """A connector takes a second SIGTERM as "stop now": the demo must ask once."""
    child = start(tmp_path, run_id, STUBBORN, started)
    first_line(child)
    processes.request_stop(child)
    assert child.stopped
    processes.request_stop(child, signal.SIGKILL)  # ignored: already asked
    assert child.alive()


def test_kill_hard_kills_only_the_parent_and_names_its_children(
    tmp_path: Path, run_id: str, started: list[Child]
) -> None:
    parent = start(tmp_path, run_id, PARENT, started)
    grandchild = int(first_line(parent))
    orphans = processes.kill_hard(parent)
    assert orphans == {grandchild}
    assert parent.popen.returncode == -signal.SIGKILL
    assert processes.pid_alive(grandchild)  # a crash leaves it: the demo checks it dies by itself
    assert processes.wait_gone({grandchild}, 0.1) == {grandchild}
    processes.kill_pids({grandchild})
    assert processes.wait_gone({grandchild}, 10) == set()


def test_marked_processes_ignores_other_runs(tmp_path: Path, run_id: str, started: list[Child]) -> None:
    child = start(tmp_path, run_id, STUBBORN, started)
    first_line(child)
    assert processes.marked_processes(uuid.uuid4().hex) == set()
    assert processes.marked_processes(run_id) == {child.pid}


def test_gone_processes_are_not_alive() -> None:
    assert not processes.pid_alive(2**22 + 1)  # above pid_max: never a process
    assert processes.signal_group(2**22 + 1, signal.SIGTERM) is False
    assert processes.wait_gone({2**22 + 1}, 0) == set()
