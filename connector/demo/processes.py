"""Child processes of the demo, each in its own process group, stopped by pid.

Every child gets the environment variable `MARKER` set to the run's id; its
own children (connector workers, the emulators' Java and Python processes)
inherit it. After everything was stopped, `marked_processes` finds anything
of this run still alive, so the demo can say honestly whether it left a
process behind, and stop it by its pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MARKER = "WA_KEEPER_DEMO_RUN"
"""Environment variable that tags every process of one demo run."""

PROC = Path("/proc")


@dataclass
class Child:
    """One started process: its name, Popen and log file; its pid is also its process group id."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def spawn(name: str, argv: list[str], env: Mapping[str, str], log: Path, cwd: Path) -> Child:
    """Start `argv` in a new session (its own process group), output to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        popen = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, popen, log)


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_members(pgid: int) -> set[int]:
    """Live (not zombie) pids whose process group is `pgid`."""
    return {stat.pid for stat in process_stats() if stat.pgid == pgid and stat.state != "Z"}


def wait_gone(pids: Iterable[int], within_s: float) -> set[int]:
    """Wait until none of `pids` is alive (zombies count as gone); the ones still alive."""
    wanted = set(pids)
    deadline = time.monotonic() + within_s
    while True:
        left = {pid for pid in wanted if pid_alive(pid)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def request_stop(child: Child, sig: int = signal.SIGTERM) -> None:
    """Send `sig` once (a connector takes a second SIGTERM as "stop now")."""
    if not child.stopped and child.alive():
        with contextlib.suppress(ProcessLookupError):
            child.popen.send_signal(sig)
    child.stopped = True


def stop(child: Child, sig: int = signal.SIGTERM, within_s: float = 25.0) -> None:
    """Ask the child to stop with `sig` (unless asked before), wait, then kill what is left of its group."""
    request_stop(child, sig)
    try:
        child.popen.wait(within_s)
    except subprocess.TimeoutExpired:
        signal_group(child.pid, signal.SIGKILL)
        child.popen.wait(10)
    # Members of its group that outlived it (workers, function runtimes): TERM, then KILL.
    if group_members(child.pid):
        signal_group(child.pid, signal.SIGTERM)
        if wait_gone(group_members(child.pid), 5.0):
            signal_group(child.pid, signal.SIGKILL)
            wait_gone(group_members(child.pid), 5.0)


def kill_hard(child: Child) -> set[int]:
    """SIGKILL the child alone (a crash); its children must die on their own. Their pids."""
    orphans = children_of(child.pid)
    child.stopped = True
    with contextlib.suppress(ProcessLookupError):
        child.popen.send_signal(signal.SIGKILL)
    child.popen.wait(10)
    return orphans


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    pgid: int
    state: str


def process_stats() -> list[ProcStat]:
    """Every process's pid, parent, group and state from /proc (vanished ones skipped)."""
    stats = []
    for entry in PROC.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = entry.read_text().rsplit(")", 1)[1].split()
            stats.append(ProcStat(int(entry.parent.name), int(fields[1]), int(fields[2]), fields[0]))
    return stats


def children_of(pid: int) -> set[int]:
    return {stat.pid for stat in process_stats() if stat.ppid == pid and stat.state != "Z"}


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def marked_processes(run_id: str) -> set[int]:
    """Live processes (other than this one) whose environment carries `MARKER=run_id`."""
    needle = f"{MARKER}={run_id}".encode()
    found = set()
    for entry in PROC.glob("[0-9]*/environ"):
        pid = int(entry.parent.name)
        if pid == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in entry.read_bytes().split(b"\0") and pid_alive(pid):
                found.add(pid)
    return found


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
