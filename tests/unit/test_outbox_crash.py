"""A connector killed with SIGKILL right after emitting loses no event: the next process sends them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from connector.adapters.memory_publisher import MemoryPublisher
from connector.clock import FakeClock
from connector.outbox import Outbox

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from connector.adapters.memory_publisher import MemoryPublisher
    from connector.clock import FakeClock
    from connector.outbox import Outbox
    from wa_wire import EventType, LifecycleEvent

    publisher = MemoryPublisher()
    publisher.go_down()
    outbox = Outbox(Path(sys.argv[1]), publisher, FakeClock())
    for n in range(50):
        event = LifecycleEvent.new(
            EventType.CONNECTED, account_id=f"acct-{n % 5}", connector_id="c", lease_epoch=1,
            at=FakeClock().now(),
        )
        outbox.emit(event)
        print(event.event_id, flush=True)
    print("stored", flush=True)
    sys.stdin.read()  # hold the outbox open until killed
    """
)


def emit_then_get_killed(path: Path) -> list[str]:
    """Run the child until it has stored its events, SIGKILL it; the emitted event ids."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert child.stdout is not None
    emitted: list[str] = []
    for line in child.stdout:  # ends at EOF if the child fails early
        if line == "stored\n":
            break
        emitted.append(line.strip())
    child.kill()
    assert child.wait(timeout=30) == -9
    return emitted


async def test_the_next_process_publishes_what_a_killed_one_left(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    emitted = await asyncio.to_thread(emit_then_get_killed, path)
    assert len(emitted) == 50

    publisher = MemoryPublisher(topic_exists=True)
    outbox = Outbox(path, publisher, FakeClock())
    try:
        assert outbox.depth() == 50, "the lock died with the process and every row is there"
        assert await outbox.flush(10)
    finally:
        outbox.close()
    assert [m.event_id for _, m in publisher.published] == emitted
