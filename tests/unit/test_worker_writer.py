"""The report writer: whole lines, oversized reports dropped, a closed pipe survived."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pytest

from connector.workers import protocol as wp
from connector.workers.writer import ReportWriter


def test_reports_are_whole_lines_even_from_many_threads() -> None:
    read_end, write_end = os.pipe()
    writer = ReportWriter(write_end)
    messages = [wp.Disconnected(account=f"a{i}", reason="x" * 1500) for i in range(40)]
    threads = [threading.Thread(target=writer.emit, args=(m,)) for m in messages]
    received = bytearray()
    reader = threading.Thread(target=lambda: received.extend(_read_all(read_end)))
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.close(write_end)
    reader.join()
    lines = bytes(received).splitlines(keepends=True)
    assert sorted(lines) == sorted(wp.encode_line(m) for m in messages)


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


def test_a_report_too_large_for_a_line_is_logged_and_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    big = wp.Paired(account="a", jid="j")
    object.__setattr__(big, "jid", "j" * (wp.MAX_LINE_BYTES + 1))  # bypass validation: an oversized report
    read_end, write_end = os.pipe()
    writer = ReportWriter(write_end)
    with caplog.at_level(logging.ERROR):
        writer.emit(big)
        writer.emit(wp.Stopped(account="a"))
    os.close(write_end)
    assert _read_all(read_end) == wp.encode_line(wp.Stopped(account="a"))  # the next report still goes out
    assert "dropped a paired report for a" in caplog.text
    assert "jjjj" not in caplog.text  # the content (maybe a secret) is not logged


def test_a_closed_pipe_marks_the_writer_broken_without_raising() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    writer = ReportWriter(write_end)
    writer.emit(wp.Stopped(account="a"))
    writer.emit(wp.Stopped(account="a"))
    assert writer.broken
    os.close(write_end)


def test_claim_stdout_keeps_stray_output_out_of_the_protocol() -> None:
    """print() and raw writes to fd 1 (what neonize's Go side does) land on stderr."""
    script = (
        "import os\n"
        "from connector.workers import protocol as wp\n"
        "from connector.workers.writer import claim_stdout\n"
        "writer = claim_stdout()\n"
        "print('stray print', flush=True)\n"
        "os.write(1, b'Login event: success\\n')\n"
        "writer.emit(wp.Stopped(account='a'))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, timeout=60)
    assert done.stdout == wp.encode_line(wp.Stopped(account="a"))
    assert b"stray print" in done.stderr and b"Login event: success" in done.stderr
