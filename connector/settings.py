"""Settings: one frozen, validated object built once from the environment.

A `.env` file in the working directory may hold them (the environment wins).
A bad or missing setting stops the start with one line naming it
(`SettingsError`). Key material never appears in repr or logs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from connector.errors import SettingsError
from wa_wire import DEFAULT_TOPIC
from wa_wire.names import MAX_ID_LEN

TRANSPORTS = ("neonize", "sim")


@dataclass(frozen=True)
class BackupKey:
    """A 256-bit key-encryption key and its public id (recorded in each manifest)."""

    key_id: str
    material: bytes = field(repr=False)

    @classmethod
    def from_base64(cls, text: str, setting: str) -> BackupKey:
        try:
            material = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise SettingsError(f"{setting}: not valid base64") from exc
        if len(material) != 32:
            raise SettingsError(f"{setting}: must decode to 32 bytes (a 256-bit key), got {len(material)}")
        key_id = "kek-" + hashlib.sha256(b"wa-keeper key id\x00" + material).hexdigest()[:16]
        return cls(key_id=key_id, material=material)


@dataclass(frozen=True)
class Settings:
    """Every setting of the connector, with its environment variable in the comment."""

    sessions_path: Path  # SESSIONS_PATH
    project: str  # GOOGLE_CLOUD_PROJECT
    backup_key: BackupKey | None  # WA_KEEPER_BACKUP_KEY or WA_KEEPER_BACKUP_KEY_FILE
    old_backup_keys: tuple[BackupKey, ...]  # WA_KEEPER_BACKUP_OLD_KEYS (comma-separated base64)
    connector_id: str  # WA_KEEPER_CONNECTOR_ID (default: the host name)
    transport: str  # WA_KEEPER_TRANSPORT: neonize | sim
    sim_url: str  # WA_KEEPER_SIM_URL
    lease_ttl_s: float  # WA_KEEPER_LEASE_TTL_S
    http_host: str  # WA_KEEPER_HTTP_HOST
    http_port: int  # WA_KEEPER_HTTP_PORT
    topic: str  # WA_KEEPER_TOPIC
    backup_interval_s: float  # WA_KEEPER_BACKUP_INTERVAL_S
    health_interval_s: float  # WA_KEEPER_HEALTH_INTERVAL_S
    require_persistent: bool  # WA_KEEPER_REQUIRE_PERSISTENT (also --require-persistent)

    def require_backup_key(self) -> BackupKey:
        if self.backup_key is None:
            raise SettingsError("WA_KEEPER_BACKUP_KEY or WA_KEEPER_BACKUP_KEY_FILE must be set")
        return self.backup_key

    def decryption_keys(self) -> dict[str, BackupKey]:
        """Current and old keys by key id: old generations stay readable after a rotation."""
        keys = {k.key_id: k for k in self.old_backup_keys}
        if self.backup_key is not None:
            keys[self.backup_key.key_id] = self.backup_key
        return keys


SETTING_DEFAULTS: dict[str, str] = {
    "SESSIONS_PATH": "./sessions",
    "GOOGLE_CLOUD_PROJECT": "demo-wa-keeper",
    "WA_KEEPER_TRANSPORT": "neonize",
    "WA_KEEPER_SIM_URL": "http://127.0.0.1:8765",
    "WA_KEEPER_LEASE_TTL_S": "15",
    "WA_KEEPER_HTTP_HOST": "127.0.0.1",
    "WA_KEEPER_HTTP_PORT": "9464",
    "WA_KEEPER_TOPIC": DEFAULT_TOPIC,
    "WA_KEEPER_BACKUP_INTERVAL_S": "10",
    "WA_KEEPER_HEALTH_INTERVAL_S": "30",
    "WA_KEEPER_REQUIRE_PERSISTENT": "false",
}
"""Defaults of the settings that have one (the README's table is checked against this)."""


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments ignored; quotes around a value removed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" not in stripped:
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE")
        key, value = stripped.split("=", 1)
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def _number(env: Mapping[str, str], name: str, minimum: float) -> float:
    raw = env.get(name, SETTING_DEFAULTS[name])
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: not a number: {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, SETTING_DEFAULTS[name]).strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}: expected true or false, got {raw!r}")


def _backup_key(env: Mapping[str, str]) -> BackupKey | None:
    inline, path = env.get("WA_KEEPER_BACKUP_KEY"), env.get("WA_KEEPER_BACKUP_KEY_FILE")
    if inline and path:
        raise SettingsError("set only one of WA_KEEPER_BACKUP_KEY and WA_KEEPER_BACKUP_KEY_FILE")
    if inline:
        return BackupKey.from_base64(inline, "WA_KEEPER_BACKUP_KEY")
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SettingsError(f"WA_KEEPER_BACKUP_KEY_FILE: cannot read {path}: {exc.strerror}") from exc
        return BackupKey.from_base64(text, "WA_KEEPER_BACKUP_KEY_FILE")
    return None


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = Path(".env")) -> Settings:
    """Build and validate the settings; `env` defaults to os.environ over `.env`."""
    merged: dict[str, str] = read_dotenv(dotenv) if dotenv is not None else {}
    merged.update(os.environ if env is None else env)
    transport = merged.get("WA_KEEPER_TRANSPORT", SETTING_DEFAULTS["WA_KEEPER_TRANSPORT"])
    if transport not in TRANSPORTS:
        raise SettingsError(f"WA_KEEPER_TRANSPORT: must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    connector_id = merged.get("WA_KEEPER_CONNECTOR_ID") or socket.gethostname()
    if not 0 < len(connector_id) <= MAX_ID_LEN or "/" in connector_id:
        raise SettingsError(f"WA_KEEPER_CONNECTOR_ID: 1..{MAX_ID_LEN} characters without '/'")
    port = _number(merged, "WA_KEEPER_HTTP_PORT", 0)
    if port != int(port) or port > 65535:
        raise SettingsError("WA_KEEPER_HTTP_PORT: must be a port number (0 picks a free one)")
    old_keys = tuple(
        BackupKey.from_base64(part, "WA_KEEPER_BACKUP_OLD_KEYS")
        for part in merged.get("WA_KEEPER_BACKUP_OLD_KEYS", "").split(",")
        if part.strip()
    )
    return Settings(
        sessions_path=Path(merged.get("SESSIONS_PATH", SETTING_DEFAULTS["SESSIONS_PATH"])).absolute(),
        project=merged.get("GOOGLE_CLOUD_PROJECT", SETTING_DEFAULTS["GOOGLE_CLOUD_PROJECT"]),
        backup_key=_backup_key(merged),
        old_backup_keys=old_keys,
        connector_id=connector_id,
        transport=transport,
        sim_url=merged.get("WA_KEEPER_SIM_URL", SETTING_DEFAULTS["WA_KEEPER_SIM_URL"]),
        lease_ttl_s=_number(merged, "WA_KEEPER_LEASE_TTL_S", 3),
        http_host=merged.get("WA_KEEPER_HTTP_HOST", SETTING_DEFAULTS["WA_KEEPER_HTTP_HOST"]),
        http_port=int(port),
        topic=merged.get("WA_KEEPER_TOPIC", SETTING_DEFAULTS["WA_KEEPER_TOPIC"]),
        backup_interval_s=_number(merged, "WA_KEEPER_BACKUP_INTERVAL_S", 0.1),
        health_interval_s=_number(merged, "WA_KEEPER_HEALTH_INTERVAL_S", 0.1),
        require_persistent=_flag(merged, "WA_KEEPER_REQUIRE_PERSISTENT"),
    )
