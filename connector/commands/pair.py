"""`wa-keeper pair ACCOUNT`: ask the holder to pair, show the QR in the terminal, wait."""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any

from connector.errors import KeeperError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("pair", help="pair an account: QR in the terminal, waits for success")
    parser.add_argument("account")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds to wait; the pair command expires then too (default 300)",
    )
    parser.set_defaults(handler=run)


def render_qr(code: str) -> str:
    import qrcode  # noqa: PLC0415 - only this command needs it

    qr = qrcode.QRCode(border=1)
    qr.add_data(code)
    out = io.StringIO()
    qr.print_ascii(out=out, invert=True)
    return out.getvalue()


def run(args: argparse.Namespace) -> int:
    from connector import control_client as cc  # noqa: PLC0415 - keeps `wa-keeper --help` fast
    from connector.clock import SystemClock  # noqa: PLC0415
    from connector.settings import load_settings  # noqa: PLC0415
    from wa_wire import Collections, CommandAction  # noqa: PLC0415

    client = cc.connect(load_settings())
    cc.activate_account(client, args.account)
    # It expires when we stop waiting: nobody would show a QR drawn after that.
    command_id = cc.issue_command(client, SystemClock(), args.account, CommandAction.PAIR, ttl_s=args.timeout)
    print(f"pairing {args.account} (command {command_id}); waiting for a QR code…", file=sys.stderr)
    shown: set[str] = set()

    def on_change(doc: dict[str, Any]) -> bool:
        qr = doc.get("qr")
        if isinstance(qr, dict) and isinstance(qr.get("code"), str) and qr["code"] not in shown:
            shown.add(qr["code"])
            print(render_qr(qr["code"]))
            print(f"scan with WhatsApp > Linked devices (expires {qr.get('expires_at')})", file=sys.stderr)
        return doc.get("status") == "connected" and bool(shown)

    doc = cc.watch_document(client, f"{Collections.ACCOUNTS}/{args.account}", on_change, args.timeout)
    if doc is None:
        raise KeeperError(f"{args.account} was not paired within {args.timeout:.0f} s")
    print(f"{args.account} paired as {doc.get('jid')}")
    return 0
