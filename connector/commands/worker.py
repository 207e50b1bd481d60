"""`wa-keeper worker --transport neonize|sim`: a session worker the supervisor spawns.

Orders arrive on stdin and reports leave on stdout, one JSON line each
(connector.workers.protocol); logs go to stderr. Not meant for people to run
by hand, but handy for it: type `{"type":"start","account":"a","session_path":"..."}`.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from connector.settings import TRANSPORTS

PROXY_ENV = "WA_KEEPER_NEONIZE_PROXY"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("worker", help="run one session worker (spawned by the daemon)")
    parser.add_argument(
        "--transport", choices=TRANSPORTS, help="neonize (one real session) or sim (many simulated ones)"
    )
    parser.add_argument(
        "--proxy",
        default=os.environ.get(PROXY_ENV) or None,
        help=f"neonize: proxy for the WhatsApp connection, e.g. http://host:port (env {PROXY_ENV})",
    )
    parser.add_argument("--sim-url", help="sim: the sim-server URL (default: WA_KEEPER_SIM_URL)")
    parser.add_argument("--template", help="sim: an empty whatsmeow session to copy for new accounts")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from connector.settings import load_settings  # noqa: PLC0415
    from connector.workers.lifeline import die_with_supervisor  # noqa: PLC0415

    die_with_supervisor()
    transport = args.transport
    sim_url = args.sim_url
    if transport is None or (transport == "sim" and sim_url is None):
        settings = load_settings()
        transport = transport or settings.transport
        sim_url = sim_url or settings.sim_url
    if transport == "neonize":
        from connector.workers import neonize_worker  # noqa: PLC0415

        return asyncio.run(neonize_worker.serve(args.proxy))
    from connector.workers import sim_worker  # noqa: PLC0415

    template = Path(args.template) if args.template else None
    return asyncio.run(sim_worker.serve(sim_url, template))
