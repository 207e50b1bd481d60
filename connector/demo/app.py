"""`wa-keeper demo` end to end: emulators, stack, pairing, the fault script, the final table.

Everything started here is stopped here, by pid, also on Ctrl-C and on
failure (`Resources.close` runs in a `finally`); then the run's processes
are looked for by their marker, so the final table can say honestly that
none is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from rich.console import Console

from connector.demo import emulators as emu
from connector.demo import processes, script
from connector.demo.dashboard import Dashboard, render
from connector.demo.observe import AccountWatch, EventWatch, Observations
from connector.demo.processes import Child
from connector.demo.report import DemoReport, problems, table, to_json
from connector.demo.runner import Runner
from connector.demo.stack import DemoStack, StackOptions
from connector.errors import KeeperError
from wa_wire import DEFAULT_TOPIC

SWEEP_EVERY_S = 5.0
"""Cloud Scheduler runs the sweep every 5 minutes; the demo, standing in for it, every 5 s."""
SETTLE_PLACEMENT_S = 2.5
"""One placement pass (at most 2 s) after both heartbeats exist, so the accounts are spread at once."""


@dataclass(frozen=True)
class DemoOptions:
    accounts: int
    fast: bool
    keep_running: bool
    json_report: Path | None
    firebase_config: Path
    root: Path

    def account_ids(self) -> list[str]:
        return [f"acct-{n:02d}" for n in range(1, self.accounts + 1)]

    @property
    def step_within_s(self) -> float:
        return 120.0 if self.fast else 240.0


@dataclass
class Resources:
    """What must be stopped at the end, whatever happened."""

    run_id: str
    emulators: Child | None = None
    stack: DemoStack | None = None
    script_done: bool = False
    started: float = field(default_factory=time.monotonic)

    def close(self, report: DemoReport) -> None:
        if self.stack is not None:
            self.stack.stop_all()
        if self.emulators is not None:
            processes.stop(self.emulators, signal.SIGINT, within_s=40)
        stray = processes.marked_processes(self.run_id)
        if stray:
            processes.kill_pids(stray)
            processes.wait_gone(stray, 5)
            report.processes_killed_at_end = sorted(stray)
        report.processes_left = sorted(processes.marked_processes(self.run_id))


class Narrator:
    def __init__(self, console: Console, started: float) -> None:
        self.console, self.started = console, started

    def say(self, text: str) -> None:
        self.console.print(f"[{time.monotonic() - self.started:6.1f}s] {text}", highlight=False, markup=False)


def run(options: DemoOptions, console: Console) -> int:
    """Run the demo; 0 when the final table shows what the script promises and nothing is left."""
    demo = Demo(options, console)
    try:
        asyncio.run(demo.main())
    except KeeperError as exc:
        demo.report.error = str(exc)
    except (KeyboardInterrupt, asyncio.CancelledError):
        if not demo.res.script_done:
            demo.report.error = "interrupted"
    finally:
        demo.say("stopping everything the demo started… (Ctrl-C is ignored until it is done)")
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            demo.res.close(demo.report)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return demo.finish()


class Demo:
    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options, self.console = options, console
        self.accounts = options.account_ids()
        self.report = DemoReport(self.accounts)
        self.res = Resources(os.urandom(6).hex())
        self.run_dir = Path(tempfile.mkdtemp(prefix="wa-keeper-demo-"))
        self.say = Narrator(console, self.res.started).say

    async def main(self) -> None:
        main = asyncio.current_task()
        if main is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
        hosts = await self._emulators()
        os.environ.update(hosts.env())
        stack = DemoStack(
            self.options.root,
            self.run_dir,
            {**os.environ, processes.MARKER: self.res.run_id},
            StackOptions(fast=self.options.fast),
        )
        self.res.stack = stack
        stack.prepare()
        await stack.require_empty(self.accounts)
        store = Observations(time.monotonic)
        async with aiohttp.ClientSession() as http:
            scheduler = emu.Scheduler(hosts.hub, hosts.project, http)
            await scheduler.locate()
            watches: list[AccountWatch | EventWatch] = [
                AccountWatch(stack.client, store),
                EventWatch(hosts.project, DEFAULT_TOPIC, store),
            ]
            runner = Runner(
                stack, store, http, self.accounts, say=self.say, show_qr=self._show_qr,
                step_within_s=self.options.step_within_s,
            )  # fmt: skip
            dashboard = Dashboard(
                self.console,
                lambda: render(store.snapshot(), self.accounts, runner.current, datetime.now(UTC)),
            )
            sweeper = asyncio.create_task(scheduler.run_forever(SWEEP_EVERY_S, self.say))
            try:
                for watch in watches:
                    watch.start()
                dashboard.start()
                await self.script(stack, runner, http)
                self.res.script_done = True
                if self.options.keep_running:
                    dashboard.stop()
                    self.report.final_docs = store.snapshot().docs
                    self.console.print(table(self.report))
                    dashboard.start()
                    self.say("--keep-running: the stack stays up; Ctrl-C stops everything")
                    await asyncio.Event().wait()
            finally:
                self.report.final_docs = store.snapshot().docs
                if not self.report.final_devices and stack.sim_url:
                    with contextlib.suppress(KeeperError):
                        self.report.final_devices = await stack.devices(http)
                sweeper.cancel()
                dashboard.stop()
                for watch in watches:
                    watch.stop()

    async def _emulators(self) -> emu.EmulatorHosts:
        hosts = emu.from_environment(os.environ)
        if hosts is not None:
            self.say(f"reusing the emulators at {hosts.firestore} / {hosts.pubsub} (project {hosts.project})")
            return hosts
        config = self.options.firebase_config
        hosts = emu.from_config(config, emu.DEFAULT_PROJECT)
        self.say(
            f"starting the Firebase emulators (firestore {hosts.firestore}, pubsub {hosts.pubsub}, functions)…"
        )
        env = {k: v for k, v in os.environ.items() if k not in hosts.env()}
        env[processes.MARKER] = self.res.run_id
        log = self.run_dir / "logs" / "emulators.log"
        self.res.emulators = emu.start_suite(self.options.root, config, hosts.project, env, log)
        await emu.wait_ready(self.res.emulators, 180)
        return hosts

    async def script(self, stack: DemoStack, runner: Runner, http: aiohttp.ClientSession) -> None:
        self.say("starting sim-server (the simulated WhatsApp) and two connectors")
        await stack.start_sim()
        connectors = (script.CONNECTOR_A, script.CONNECTOR_B)
        await asyncio.gather(*(stack.start_connector(c, http) for c in connectors))
        await stack.both_registered((script.CONNECTOR_A, script.CONNECTOR_B), SETTLE_PLACEMENT_S)
        self.say(f"pairing {len(self.accounts)} accounts (each QR scanned at the simulated WhatsApp)")
        await runner.pair_all(240)
        self.report.initial_devices = dict(runner.initial_jids)
        self.say("waiting for a good encrypted backup of every account")
        await runner.wait_backups(180)
        for number, step in enumerate(script.SCRIPT, 1):
            self.say(f"step {number}/{len(script.SCRIPT)}: {step.title}")
            self.say(f"  {step.story}")
            if not self.options.fast:
                await asyncio.sleep(3)  # a moment to read the story before it happens
            self.report.steps.append(await runner.run(step))
        self.say("waiting for every account to show connected (late policy writes settle)")
        self.report.final_live = await runner.settle(60)
        self.report.final_devices = await stack.devices(http)

    def _show_qr(self, account: str, code: str) -> None:
        if self.console.is_terminal:
            from connector.commands.pair import render_qr  # noqa: PLC0415

            self.console.print(render_qr(code), highlight=False, markup=False)
            self.say(f"  {account}: the QR code above is what the user scans (the demo scans it for you)")
        else:
            self.say(f"  {account}: QR code received ({len(code)} characters; shown on a terminal only)")

    def finish(self) -> int:
        """Final table, JSON report, secrets removed; the exit code."""
        report, run_dir = self.report, self.run_dir
        found = problems(report)
        if report.final_docs or report.steps:
            self.console.print(table(report))
        killed = report.processes_killed_at_end
        if killed:
            self.say(f"{len(killed)} processes of this run outlived their parents; killed by pid: {killed}")
        self.say(f"processes of this run still alive: {len(report.processes_left)}")
        if self.options.json_report is not None:
            self.options.json_report.write_text(json.dumps(to_json(report, found), indent=2))
        for name in ("backup.key", "stray", *(p.name for p in run_dir.glob("sessions-*"))):
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        logs = run_dir / "logs"
        if found and any(logs.glob("*.log")):
            self.say(f"logs kept in {logs}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        if found:
            for line in found:
                self.console.print(f"problem: {line}", style="red", highlight=False, markup=False)
            return 1
        self.console.print(
            "every account recovered without a QR code except the one really logged out; nothing left running",
            style="green",
        )
        return 0
