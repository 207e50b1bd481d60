"""An in-memory `BackupStore` with the Firestore adapter's semantics, fencing included.

Unit tests of the vault run on it; tests/contract/test_backup_store.py runs the
same cases against it and the emulator-backed adapter. `set_lease_epoch` plays
the part of `leases/{account}.epoch`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence

from connector.errors import KeeperError
from connector.ports import Manifest, NextCommit, StaleEpochError, check_next_manifest, check_one_each


class MemoryBackupStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lease_epochs: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._manifests: dict[tuple[str, int], Manifest] = {}
        self._chunks: dict[tuple[str, int], dict[int, bytes]] = {}
        self.summaries: dict[str, dict[str, object]] = {}
        """The `backup` field each account would carry in Firestore."""

    # -- test controls ---------------------------------------------------------------

    def set_lease_epoch(self, account: str, epoch: int) -> None:
        with self._lock:
            self._lease_epochs[account] = epoch

    def put_chunk(self, account: str, generation: int, index: int, data: bytes) -> None:
        """Overwrite one stored chunk, inline head included (tests of tampering)."""
        with self._lock:
            manifest = self._manifests.get((account, generation))
            if index == 0 and manifest is not None and manifest.head is not None:
                self._manifests[(account, generation)] = dataclasses.replace(manifest, head=data)
                return
            self._chunks.setdefault((account, generation), {})[index] = data

    def drop_chunk(self, account: str, generation: int, index: int) -> None:
        with self._lock:
            manifest = self._manifests.get((account, generation))
            if index == 0 and manifest is not None and manifest.head is not None:
                self._manifests[(account, generation)] = dataclasses.replace(manifest, head=None)
            self._chunks.get((account, generation), {}).pop(index, None)

    # -- BackupStore -----------------------------------------------------------------

    def _check_epoch(self, account: str, epoch: int) -> None:
        current = self._lease_epochs.get(account, 0)
        if epoch < current:
            raise StaleEpochError(f"{account}: lease epoch {epoch} is older than the current {current}")

    def reserve_generation(self, account: str, epoch: int) -> int:
        with self._lock:
            self._check_epoch(account, epoch)
            generation = self._reserved.get(account, 0) + 1
            self._reserved[account] = generation
            return generation

    def commit_next(self, account: str, epoch: int, build: Callable[[int], Manifest]) -> NextCommit:
        with self._lock:
            self._check_epoch(account, epoch)
            reserved = self._reserved.get(account, 0)
            summary = self.summaries.get(account)
            newest = int(str(summary["generation"])) if summary is not None else 0
            generation = reserved + 1
            manifest = check_next_manifest(build(generation), account, generation, epoch)
            self._reserved[account] = generation
            self._manifests[(account, generation)] = manifest
            self._set_summary(manifest)
            return NextCommit(manifest, gap=reserved > newest)

    def commit_next_many(
        self, items: Sequence[tuple[str, int, Callable[[int], Manifest]]]
    ) -> list[NextCommit | Exception]:
        check_one_each([account for account, _, _ in items])
        results: list[NextCommit | Exception] = []
        for account, epoch, build in items:
            try:
                results.append(self.commit_next(account, epoch, build))
            except Exception as exc:
                results.append(exc)
        return results

    def write_chunks(self, account: str, generation: int, chunks: Sequence[bytes], start: int = 0) -> None:
        with self._lock:
            stored = self._chunks.setdefault((account, generation), {})
            for index, chunk in enumerate(chunks, start):
                stored[index] = bytes(chunk)

    def commit(self, manifest: Manifest) -> None:
        account, generation = manifest.account_id, manifest.generation
        with self._lock:
            self._check_epoch(account, manifest.lease_epoch)
            if (account, generation) in self._manifests:
                raise KeeperError(f"{account}: generation {generation} already has a manifest")
            self._manifests[(account, generation)] = manifest
            self._set_summary(manifest)

    def _set_summary(self, manifest: Manifest) -> None:
        summary = self.summaries.get(manifest.account_id)
        if summary is None or int(str(summary["generation"])) < manifest.generation:
            self.summaries[manifest.account_id] = _summary(manifest)

    def manifests(self, account: str, limit: int | None = None) -> list[Manifest]:
        with self._lock:
            found = [m for (a, _), m in self._manifests.items() if a == account]
        listed = [dataclasses.replace(m, head=None) for m in found]
        return sorted(listed, key=lambda m: m.generation, reverse=True)[:limit]

    def manifest(self, account: str, generation: int) -> Manifest | None:
        with self._lock:
            return self._manifests.get((account, generation))

    def newest_good(self, account: str) -> Manifest | None:
        with self._lock:
            good = [m for (a, _), m in self._manifests.items() if a == account and m.good]
        return max(good, key=lambda m: m.generation, default=None)

    def newest(self, account: str) -> Manifest | None:
        with self._lock:
            found = [m for (a, _), m in self._manifests.items() if a == account]
        return max(found, key=lambda m: m.generation, default=None)

    def newest_many(self, accounts: Sequence[str]) -> dict[str, Manifest]:
        found = {}
        with self._lock:
            for account in accounts:
                summary = self.summaries.get(account)
                generation = None if summary is None else summary.get("generation")
                if isinstance(generation, int) and (account, generation) in self._manifests:
                    found[account] = self._manifests[(account, generation)]
        return found

    def manifests_named(self, wanted: Mapping[str, int]) -> dict[str, Manifest]:
        with self._lock:
            return {a: self._manifests[(a, g)] for a, g in wanted.items() if (a, g) in self._manifests}

    def read_chunks(self, account: str, generation: int, count: int, start: int = 0) -> list[bytes | None]:
        with self._lock:
            stored = dict(self._chunks.get((account, generation), {}))
            manifest = self._manifests.get((account, generation))
        if manifest is not None and manifest.head is not None:
            stored[0] = manifest.head
        return [stored.get(index) for index in range(start, count)]

    def mark_good(self, account: str, generation: int) -> bool:
        with self._lock:
            manifest = self._manifests.get((account, generation))
            if manifest is None:
                return False
            marked = dataclasses.replace(manifest, good=True)
            self._manifests[(account, generation)] = marked
            summary = self.summaries.get(account)
            if summary is not None and summary["generation"] == generation:
                self.summaries[account] = _summary(marked)
            return True

    def orphan_generations(self, account: str) -> list[int]:
        with self._lock:
            return sorted(
                g
                for (a, g), chunks in self._chunks.items()
                if a == account and chunks and (a, g) not in self._manifests
            )

    def delete_generation(self, account: str, generation: int) -> None:
        with self._lock:
            self._manifests.pop((account, generation), None)
            self._chunks.pop((account, generation), None)
            summary = self.summaries.get(account)
            if summary is not None and summary["generation"] == generation:
                rest = [m for (a, _), m in self._manifests.items() if a == account]
                if rest:
                    self.summaries[account] = _summary(max(rest, key=lambda m: m.generation))
                else:
                    del self.summaries[account]

    def wipe(self, account: str, epoch: int) -> int:
        with self._lock:
            self._check_epoch(account, epoch)
            generations = {g for (a, g) in self._manifests if a == account}
            generations |= {g for (a, g) in self._chunks if a == account}
            for generation in generations:
                self._manifests.pop((account, generation), None)
                self._chunks.pop((account, generation), None)
            self.summaries.pop(account, None)
            return len(generations)


def _summary(manifest: Manifest) -> dict[str, object]:
    """The `accounts/{id}.backup` summary of the newest generation (DESIGN.md Part 1)."""
    return {
        "generation": manifest.generation,
        "at": manifest.created_at,
        "size": manifest.size,
        "sha256": manifest.sha256,
        "good": manifest.good,
    }
