"""Writing the worker protocol: reports to the supervisor, one line each.

A worker's stdout is the protocol channel, but neonize's Go side prints to file
descriptor 1 ("Login event: ...") and libraries print() by habit. So a worker
first moves the channel to a private duplicate of fd 1 and points fd 1 at
stderr (`claim_stdout`); stray output then lands in the log, never in the
protocol. Writes are serialized with a lock so a line is never interleaved.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from connector.workers.protocol import Message, ProtocolError, encode_line

log = logging.getLogger(__name__)


class ReportWriter:
    """Writes protocol lines to a file descriptor; safe to call from any thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.broken = False

    def emit(self, message: Message) -> None:
        """Write one report; a message too large for a line is logged, never half-sent."""
        try:
            line = encode_line(message)
        except ProtocolError as exc:
            log.error("dropped a %s report for %s: %s", message.TYPE, message.account, exc)
            return
        with self._lock:
            if self.broken:
                return
            try:
                view = memoryview(line)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
            except (BrokenPipeError, OSError) as exc:  # the supervisor is gone
                self.broken = True
                log.warning("protocol channel closed: %s", exc)


def claim_stdout() -> ReportWriter:
    """Take fd 1 for the protocol and send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    private = os.dup(1)
    os.set_inheritable(private, False)
    os.dup2(2, 1)
    return ReportWriter(private)
