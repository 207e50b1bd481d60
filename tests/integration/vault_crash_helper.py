"""`python -m tests.integration.vault_crash_helper MODE ROOT ACCOUNT JID`: a vault operation
that stops halfway and waits to be killed (kill -9 tests).

MODE `backup`: the chunks of a new generation are written, the manifest is not.
MODE `restore`: the first MiB of the restored file is on disk (fsynced), the rest is not.
Prints `PAUSED` on stdout at that point, then blocks until killed. The pause lives
here, in test-side wrappers of the store and the file opener, not in production code.
The key comes from WA_KEEPER_BACKUP_KEY, Firestore from the emulator variables.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from google.cloud import firestore

from connector.adapters.disk_sessions import DiskSessions
from connector.adapters.firestore_backups import FirestoreBackupStore
from connector.backup_crypto import Keyring
from connector.clock import SystemClock
from connector.ports import MemoryEventSink
from connector.settings import BackupKey
from connector.vault import SessionVault


def pause() -> None:
    print("PAUSED", flush=True)
    sys.stdin.read()  # the test never closes stdin: wait for SIGKILL
    raise SystemExit("stdin closed before the kill")


class PausingStore(FirestoreBackupStore):
    def write_chunks(self, account: str, generation: int, chunks: Sequence[bytes], start: int = 0) -> None:
        super().write_chunks(account, generation, chunks, start)
        pause()


class PausingFile(io.FileIO):
    """Writes through to the real file and pauses after the first piece reached the disk."""

    def write(self, data: object) -> int:
        written = super().write(data)  # type: ignore[arg-type]
        self.flush()
        os.fsync(self.fileno())
        pause()
        return written


def pausing_opener(path: Path) -> BinaryIO:
    return PausingFile(path, "xb")


def main(mode: str, root: str, account: str, jid: str) -> int:
    clock = SystemClock()
    keys = Keyring(BackupKey.from_base64(os.environ["WA_KEEPER_BACKUP_KEY"], "WA_KEEPER_BACKUP_KEY"))
    client = firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])
    if mode == "backup":
        vault = SessionVault(
            DiskSessions(Path(root), clock), PausingStore(client), keys, MemoryEventSink(),
            clock=clock, connector_id="crash-helper",
        )  # fmt: skip
        vault.backup(account, jid, 1, True)
    elif mode == "restore":
        vault = SessionVault(
            DiskSessions(Path(root), clock, pausing_opener), FirestoreBackupStore(client), keys,
            MemoryEventSink(), clock=clock, connector_id="crash-helper",
        )  # fmt: skip
        vault.restore(account, 1)
    else:
        raise SystemExit(f"unknown mode {mode}")
    raise SystemExit("finished without pausing")


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
