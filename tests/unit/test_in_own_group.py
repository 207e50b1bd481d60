"""scripts/in_own_group.sh: the command's exit status, and nothing of its process group left."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "in_own_group.sh"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text() if Path(f"/proc/{pid}/stat").exists() else ""
    return " Z " not in stat  # a zombie waiting for init counts as gone


def test_leftover_children_are_killed_and_the_status_is_kept(tmp_path: Path) -> None:
    """Like the functions emulator's workers: started by the command, still running when it exits."""
    pidfile = tmp_path / "left.pid"
    command = f"sleep 300 & echo $! > {pidfile}; exit 3"
    done = subprocess.run([str(SCRIPT), "bash", "-c", command], timeout=60, check=False)
    assert done.returncode == 3
    left = int(pidfile.read_text())
    assert not alive(left)


def test_a_clean_command_passes_through(tmp_path: Path) -> None:
    done = subprocess.run([str(SCRIPT), "true"], timeout=60, check=False)
    assert done.returncode == 0
