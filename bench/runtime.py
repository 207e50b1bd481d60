"""Start-up of many accounts from backups: `wa-keeper run` with an empty SESSIONS_PATH.

Pairs N simulated accounts (sim-server) through one connector, waits until each
has a good backup, stops the connector (SIGTERM: final backups, leases
released), deletes SESSIONS_PATH, starts the connector again and measures:
time until every account is connected, supervisor RSS and CPU per account
(against the same process idle before it held anything), and event publish
latency (event time to arrival on a pull subscription) p50/p95.

Needs the emulators (scripts/dev_emulators.sh start), e.g.:
  FIRESTORE_EMULATOR_HOST=127.0.0.1:9180 PUBSUB_EMULATOR_HOST=127.0.0.1:9185 \
  GOOGLE_CLOUD_PROJECT=demo-bench .venv/bin/python bench/runtime.py --accounts 200
Figures are printed, never asserted.

Measured 2026-11-26 on the 2-vCPU development machine (quiet, load average 0.2),
200 accounts: all connected 14.1 s after start (target <= 20 s); supervisor RSS
88.9 MiB at first /status, 116.5 MiB with all connected = 0.138 MiB per account
(target <= 2); CPU 50.5 ms per account during the start; 589 events, emit->pull
p50 372 ms / p95 1939 ms (the pull's own polling included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import google.cloud.pubsub_v1 as pubsub_v1  # noqa: PLR0402 - mypy sees the module this way
from google.api_core.exceptions import AlreadyExists
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from connector.control_client import activate_account
from tests import emulator
from tests.integration.stack_support import Stack, wait_until
from tests.pubsub_pull import PullSubscription, unique_topic
from wa_wire import CommandAction
from wa_wire.codec import parse_timestamp

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * PAGE / 2**20


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def connected(stack: Stack, conn: str) -> int:
    status = stack.http_status(conn) or {}
    accounts = status.get("accounts", {})
    return sum(1 for view in accounts.values() if view["status"] == "connected")


def pair_all(stack: Stack, accounts: list[str]) -> None:
    for account in accounts:
        activate_account(stack.client, account)
        stack.command(account, CommandAction.PAIR)
    waiting = set(accounts)

    def scan_pending() -> bool:
        _s, pending = stack.sim_api("GET", "/api/qr")
        for item in pending["pending"]:
            if item["account"] in waiting:
                code, _body = stack.sim_api("POST", "/api/scan", {"account": item["account"]})
                if code == 200:
                    waiting.discard(item["account"])
        return not waiting

    wait_until("every account scanned", scan_pending, 600, every_s=0.2)


def good_backups(stack: Stack, accounts: list[str]) -> int:
    docs = stack.client.collection("accounts").where(filter=FieldFilter("desired", "==", "active")).stream()
    return sum(1 for d in docs if ((d.to_dict() or {}).get("backup") or {}).get("good") and d.id in accounts)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(stack: Stack, topic: str, accounts: list[str]) -> None:
    events = PullSubscription(topic)
    latencies: list[float] = []
    done = threading.Event()

    def pull() -> None:  # concurrently, so the figure is the publish path, not our wait
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                for message in events.pull_until(1, 1):
                    sent = parse_timestamp(json.loads(message.data)["at"])
                    latencies.append((datetime.now(UTC) - sent).total_seconds())

    puller = threading.Thread(target=pull, daemon=True)
    puller.start()
    start = time.monotonic()  # from the process start: interpreter, imports, leases, restores
    proc = stack.start_connector(
        "bench-a", WA_KEEPER_BACKUP_INTERVAL_S="10", WA_KEEPER_HEALTH_INTERVAL_S="30"
    )
    idle_rss, cpu0 = rss_mib(proc.popen.pid), cpu_s(proc.popen.pid)  # at its first /status answer
    wait_until("all connected again", lambda: connected(stack, "bench-a") == len(accounts), 900, 0.2)
    elapsed = time.monotonic() - start
    busy_rss, cpu1 = rss_mib(proc.popen.pid), cpu_s(proc.popen.pid)

    wait_until("the events of the start", lambda: len(latencies) >= len(accounts), 60, 0.2)
    done.set()
    puller.join(5)
    events.close()
    n = len(accounts)
    print(f"\n{n} accounts, backups in Firestore, empty SESSIONS_PATH, one connector (sim transport)")
    print(f"  all connected after start:        {elapsed:8.2f} s   (target <= 20 s for 200)")
    print(f"  supervisor RSS at first /status / all connected: {idle_rss:.1f} / {busy_rss:.1f} MiB")
    print(f"  supervisor RSS per account:       {(busy_rss - idle_rss) / n:8.3f} MiB (target <= 2)")
    print(f"  supervisor CPU per account:       {(cpu1 - cpu0) / n * 1000:8.1f} ms during the start")
    if latencies:
        print(
            f"  events seen ({len(latencies)}), emit->pull p50/p95: {percentile(latencies, 0.5) * 1000:.0f} / "
            f"{percentile(latencies, 0.95) * 1000:.0f} ms (includes the pull's own delay)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=200)
    args = parser.parse_args()
    emulator.require_emulators()
    emulator.reset_firestore()
    accounts = [f"bench-{n:04d}" for n in range(args.accounts)]
    tmp = Path(tempfile.mkdtemp(prefix="wa-keeper-bench-"))
    topic = unique_topic("bench")
    publisher = pubsub_v1.PublisherClient()
    with contextlib.suppress(AlreadyExists):
        publisher.create_topic(name=publisher.topic_path(emulator.project_id(), topic))
    stack = Stack(tmp=tmp, topic=topic, client=firestore.Client(project=emulator.project_id()))
    try:
        stack.start_sim("--churn-ms", "5000")  # key churn every 5 s per account, like light traffic
        stack.start_connector("bench-a", WA_KEEPER_BACKUP_INTERVAL_S="10", WA_KEEPER_HEALTH_INTERVAL_S="30")
        print(f"pairing {len(accounts)} simulated accounts…", flush=True)
        t0 = time.monotonic()
        pair_all(stack, accounts)
        wait_until("all connected", lambda: connected(stack, "bench-a") == len(accounts), 600, every_s=0.5)
        wait_until("a good backup of each", lambda: good_backups(stack, accounts) == len(accounts), 600, 1)
        print(f"paired and backed up in {time.monotonic() - t0:.1f} s", flush=True)
        proc, _port = stack.connectors["bench-a"]
        proc.stop(60)
        shutil.rmtree(stack.sessions_path("bench-a"))

        measure(stack, topic, accounts)
    finally:
        stack.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
