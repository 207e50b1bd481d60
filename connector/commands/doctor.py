"""`wa-keeper doctor`: check what the connector needs, print pass/warn/fail for each.

SESSIONS_PATH (created, writable, fsync, persistent, volume marker), the backup
keys, Firestore, Pub/Sub and the clock. Exit 1 when any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from connector.adapters.sessions_volume import CheckStatus, PathCheck, VolumeMarker, check_sessions_path
from connector.errors import KeeperError

if TYPE_CHECKING:
    from google.cloud import firestore

    from connector.settings import Settings

CLOCK_WARN_S = 2.0
CLOCK_FAIL_S = 60.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check SESSIONS_PATH, keys, Firestore, Pub/Sub and the clock"
    )
    parser.add_argument(
        "--require-persistent",
        action="store_true",
        help="a SESSIONS_PATH on tmpfs/ramfs fails instead of warning",
    )
    parser.set_defaults(handler=run)


def sessions_checks(settings: Settings, require_persistent: bool) -> list[PathCheck]:
    checks = [
        PathCheck(f"sessions {c.name}", c.status, c.detail)
        for c in check_sessions_path(
            settings.sessions_path, require_persistent or settings.require_persistent
        )
    ]
    volume = VolumeMarker(settings.sessions_path).read()
    if volume is not None:
        checks.append(PathCheck("volume marker", CheckStatus.PASS, f"volume {volume}"))
    else:
        checks.append(
            PathCheck(
                "volume marker",
                CheckStatus.WARN,
                "none yet: `run` writes one (if it ran here, the disk was wiped)",
            )
        )
    return checks


def key_checks(settings: Settings) -> list[PathCheck]:
    if settings.backup_key is None:
        return [
            PathCheck(
                "backup key", CheckStatus.FAIL, "WA_KEEPER_BACKUP_KEY or WA_KEEPER_BACKUP_KEY_FILE is not set"
            )
        ]
    old = ", ".join(k.key_id for k in settings.old_backup_keys) or "none"
    return [PathCheck("backup key", CheckStatus.PASS, f"current {settings.backup_key.key_id}; older: {old}")]


def clock_check(skew_s: float) -> PathCheck:
    """Leases never compare host clocks, but record timestamps and TLS need a sane clock."""
    detail = f"local clock is {skew_s:+.1f} s from Firestore's"
    if abs(skew_s) >= CLOCK_FAIL_S:
        return PathCheck("clock", CheckStatus.FAIL, detail)
    return PathCheck("clock", CheckStatus.WARN if abs(skew_s) >= CLOCK_WARN_S else CheckStatus.PASS, detail)


def firestore_checks(settings: Settings) -> tuple[list[PathCheck], firestore.Client | None]:
    from connector import control_client as cc  # noqa: PLC0415
    from wa_wire import Collections  # noqa: PLC0415

    try:
        client = cc.connect(settings)
    except KeeperError as exc:
        return [PathCheck("firestore", CheckStatus.FAIL, str(exc))], None
    before = datetime.now(UTC)
    snap = client.collection(Collections.LEASES).document("doctor-clock-probe").get(timeout=10)
    after = datetime.now(UTC)
    local = before + (after - before) / 2
    checks = [PathCheck("firestore", CheckStatus.PASS, f"project {settings.project} reachable")]
    return [*checks, clock_check((local - snap.read_time).total_seconds())], client


def pubsub_check(settings: Settings) -> PathCheck:
    from connector.adapters.pubsub_publisher import PubSubPublisher  # noqa: PLC0415

    async def probe() -> None:
        publisher = PubSubPublisher.connect(settings.project, settings.topic, publish_timeout_s=10)
        try:
            await publisher.ensure_topic()
        finally:
            await publisher.close()

    try:
        asyncio.run(probe())
    except KeeperError as exc:
        return PathCheck("pubsub", CheckStatus.FAIL, str(exc))
    return PathCheck("pubsub", CheckStatus.PASS, f"topic {settings.topic} ready")


def render(checks: list[PathCheck], out: Callable[[str], None] = print) -> None:
    width = max(len(c.name) for c in checks)
    for check in checks:
        out(f"{check.status.value:<4}  {check.name:<{width}}  {check.detail}")


def run(args: argparse.Namespace) -> int:
    from connector.settings import load_settings  # noqa: PLC0415

    settings = load_settings()
    checks = sessions_checks(settings, args.require_persistent) + key_checks(settings)
    store_checks, _client = firestore_checks(settings)
    checks += [*store_checks, pubsub_check(settings)]
    render(checks)
    failed = [c.name for c in checks if c.status is CheckStatus.FAIL]
    if failed:
        raise KeeperError(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}")
    return 0
