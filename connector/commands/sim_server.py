"""`wa-keeper sim-server`: the simulated WhatsApp service on loopback.

Prints one line `sim-server listening on http://HOST:PORT` once it accepts
connections (with `--port 0` that is how a caller learns the port), then
serves until SIGINT or SIGTERM. API and websocket: connector/sim/server.py.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.sim.server import SimConfig

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("sim-server", help="run the simulated WhatsApp service (tests, demo)")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port; 0 picks a free one")
    parser.add_argument("--keepalive-ms", type=_positive, default=20_000, help="keepalive ping interval")
    parser.add_argument(
        "--churn-ms", type=_non_negative, default=10_000, help="key churn interval while connected (0: none)"
    )
    parser.add_argument("--qr-ttl-s", type=_positive, default=60, help="lifetime of the first QR code")
    parser.set_defaults(handler=run)


def _port(text: str) -> int:
    value = _non_negative(text)
    if value > 65535:
        raise argparse.ArgumentTypeError("a port is 0..65535")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def run(args: argparse.Namespace) -> int:
    from connector.sim.server import SimConfig  # noqa: PLC0415

    config = SimConfig(
        keepalive_ms=args.keepalive_ms,
        churn_ms=args.churn_ms,
        first_qr_s=float(args.qr_ttl_s),
        next_qr_s=max(1.0, args.qr_ttl_s / 3),
    )
    asyncio.run(_serve(args.host, args.port, config))
    return 0


async def _serve(host: str, port: int, config: SimConfig) -> None:
    import signal  # noqa: PLC0415

    from connector.errors import KeeperError  # noqa: PLC0415
    from connector.sim.server import start_server  # noqa: PLC0415

    try:
        running = await start_server(host, port, config)
    except OSError as exc:
        raise KeeperError(f"sim-server: cannot listen on {host}:{port}: {exc.strerror}") from exc
    print(f"sim-server listening on {running.url}", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await running.close()
