"""A worker dies with its supervisor: PR_SET_PDEATHSIG, set by the worker itself.

It used to be set by a `preexec_fn` in the supervisor, which runs Python (and
dlopen) in the child between fork and exec. With gRPC threads alive in the
supervisor that can deadlock the child (a lock copied held by the fork): seen
once as a standby whose sim worker never started, so it restored four accounts
and connected none. Setting it after exec has a race (the supervisor may die
first), closed by comparing the parent with the pid the supervisor passed.
Closing stdin already stops a worker; this is for one that is not reading.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

SUPERVISOR_PID_ENV = "WA_KEEPER_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1


def die_with_supervisor() -> None:
    """Ask for SIGTERM when the parent dies; exit now if it is already gone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    expected = os.environ.get(SUPERVISOR_PID_ENV, "")
    if expected.isdigit() and os.getppid() != int(expected):
        print("the supervisor is gone before this worker started: exiting", file=sys.stderr)
        sys.exit(0)
