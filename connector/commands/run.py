"""`wa-keeper run`: the connector daemon (SIGTERM: graceful handoff; a second one: kill)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("run", help="run the connector daemon")
    parser.add_argument(
        "--require-persistent",
        action="store_true",
        help="refuse to start when SESSIONS_PATH is on tmpfs/ramfs (sessions would not survive a reboot)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("google", "grpc", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    from connector.bootstrap import build_daemon  # noqa: PLC0415 - heavy imports only for run
    from connector.settings import load_settings  # noqa: PLC0415
    from connector.thread_pools import started_pool  # noqa: PLC0415

    loop = asyncio.get_running_loop()
    # Vault backups, status writes and command claims run in threads; with hundreds of
    # accounts the default pool (cores + 4) would queue them for seconds.
    loop.set_default_executor(started_pool(48, "wa-io"))  # no thread started on the loop later
    daemon = build_daemon(load_settings(), require_persistent=args.require_persistent)
    terms = 0

    def on_term() -> None:
        nonlocal terms
        terms += 1
        if terms == 1:
            logging.getLogger("wa_keeper").info("stopping: final backups, then releasing leases")
            daemon.stop()
        else:
            logging.getLogger("wa_keeper").warning("second signal: stopping now")
            daemon.supervisor.kill_all()
            loop.call_soon(sys.exit, 1)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_term)
    await daemon.run()
    return 0
