"""Memory of session workers: one neonize worker, and one sim worker serving N accounts.

    .venv/bin/python bench/workers.py [--accounts 1,100,500]

Prints the resident set (RSS) and private memory of each worker process once
its sessions are up: the neonize worker on a synthetic paired session whose
dial fails offline (a closed local proxy), the sim worker with every account
paired by QR and connected to an in-process sim-server (default intervals).
Also prints how long `stop` took. Figures only; nothing is asserted.

Measured on the development machine (2 vCPU, Linux 6.18, Python 3.11, neonize 0.5.2):
  neonize worker, 1 account : rss 72.1 MiB, private 57.7 MiB (stop 0.02 s)
  sim worker, 1 / 100 / 500 accounts: rss 40.3 / 43.1 / 52.4 MiB (~25-29 KiB per added account;
  500 accounts paired by QR and connected in ~12 s, all stopped in 0.7 s)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from connector.sessions import whatsmeow
from connector.sim.server import start_server
from connector.workers import protocol as wp
from connector.workers.reader import read_messages

DEADLINE_S = 120.0


def memory_kib(pid: int) -> dict[str, int]:
    """Rss, Pss and private memory (KiB) of a process, from /proc/PID/smaps_rollup."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "kB":
            values[parts[0].rstrip(":")] = int(parts[1])
    return {
        "rss": values["Rss"],
        "pss": values["Pss"],
        "private": values["Private_Clean"] + values["Private_Dirty"],
    }


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        assert proc.stdout is not None
        self.stream = read_messages(proc.stdout, wp.REPORTS)

    @classmethod
    async def spawn(cls, *args: str, env: dict[str, str] | None = None) -> Worker:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "connector",
            "worker",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        return cls(proc)

    async def send(self, order: wp.Message) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(wp.encode_line(order))
        await self.proc.stdin.drain()

    async def until(self, kind: type[wp.Message], accounts: set[str]) -> None:
        """Read reports until every account in `accounts` has sent one of `kind`."""
        waiting = set(accounts)
        async with asyncio.timeout(DEADLINE_S):
            while waiting:
                item = await anext(self.stream)
                if isinstance(item, kind):
                    waiting.discard(item.account)
                elif isinstance(item, wp.Fatal):
                    raise RuntimeError(f"{item.account}: {item.message}")

    async def stop_all(self, accounts: list[str]) -> float:
        began = time.perf_counter()
        for account in accounts:
            await self.send(wp.Stop(account=account))
        await self.until(wp.Stopped, set(accounts))
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        async with asyncio.timeout(DEADLINE_S):
            await self.proc.wait()
        return time.perf_counter() - began


async def neonize_figures(root: Path) -> None:
    template = root / "template.db"
    whatsmeow.make_schema(template)
    session = root / "neonize" / whatsmeow.SESSION_FILE
    whatsmeow.copy_template(template, session)
    whatsmeow.write_device(session, whatsmeow.DeviceKeys.random("15550001111:7@s.whatsapp.net"))
    began = time.perf_counter()
    worker = await Worker.spawn(
        "--transport", "neonize", env={"WA_KEEPER_NEONIZE_PROXY": "http://127.0.0.1:1"}
    )
    await worker.send(wp.Start(account="n1", session_path=str(session)))
    await worker.until(wp.Disconnected, {"n1"})  # loaded, client created, dial failed
    ready = time.perf_counter() - began
    mem = memory_kib(worker.proc.pid)
    stop_s = await worker.stop_all(["n1"])
    print(
        f"neonize worker, 1 account : rss {mem['rss'] / 1024:6.1f} MiB  private {mem['private'] / 1024:6.1f} MiB"
        f"  (start to dial failure {ready:.2f} s, stop {stop_s:.2f} s)"
    )


async def sim_figures(root: Path, counts: list[int]) -> None:
    template = root / "template.db"
    server = await start_server(port=0)
    baseline: int | None = None
    try:
        async with aiohttp.ClientSession() as http:
            for count in counts:
                rss = await _one_sim_run(
                    root / f"sim-{count}", template, server.url, http, count, baseline=baseline
                )
                baseline = rss if baseline is None else baseline
    finally:
        await server.close()


async def _one_sim_run(
    root: Path, template: Path, url: str, http: aiohttp.ClientSession, count: int, *, baseline: int | None
) -> int:
    """One fresh sim worker with `count` accounts; returns its RSS (KiB)."""
    accounts = [f"s{count}-{i}" for i in range(count)]
    began = time.perf_counter()
    worker = await Worker.spawn("--transport", "sim", "--sim-url", url, "--template", str(template))
    for account in accounts:
        await worker.send(
            wp.Start(account=account, session_path=str(root / account / whatsmeow.SESSION_FILE))
        )
    await worker.until(wp.Loaded, set(accounts))
    for account in accounts:
        await worker.send(wp.Pair(account=account))
    await worker.until(wp.Qr, set(accounts))
    for account in accounts:
        async with http.post(url + "/api/scan", json={"account": account}) as response:
            response.raise_for_status()
    await worker.until(wp.Connected, set(accounts))
    up = time.perf_counter() - began
    mem = memory_kib(worker.proc.pid)
    stop_s = await worker.stop_all(accounts)
    marginal = (
        f"{(mem['rss'] - baseline) / (count - 1):5.0f} KiB more per added account"
        if baseline is not None and count > 1
        else "the baseline"
    )
    print(
        f"sim worker, {count:4d} accounts: rss {mem['rss'] / 1024:6.1f} MiB  private {mem['private'] / 1024:6.1f} MiB"
        f"  ({marginal}; all paired+connected in {up:.2f} s, stop {stop_s:.2f} s)"
    )
    return mem["rss"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="1,100,500", help="sim worker sizes, comma-separated")
    parser.add_argument("--skip-neonize", action="store_true")
    args = parser.parse_args()
    counts = [int(c) for c in args.accounts.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="wa-keeper-bench-") as folder:
        root = Path(folder)
        if not args.skip_neonize:
            await neonize_figures(root)
        else:
            whatsmeow.make_schema(root / "template.db")
        await sim_figures(root, counts)


if __name__ == "__main__":
    asyncio.run(main())
