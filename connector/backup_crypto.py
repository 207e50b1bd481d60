"""Envelope encryption of session snapshots: compress, chunk, AES-256-GCM.

Each generation gets a fresh random 256-bit data key. The data key is wrapped
(AES-256-GCM again) by the key-encryption key from the settings, and only the
wrapped key and the KEK's public `key_id` go into the manifest, so a KEK can
rotate: old generations stay readable while the old KEK is configured as a
secondary key. Each chunk's associated data binds the account, generation,
chunk index, chunk count and format, so a chunk copied from another account or
generation, reordered or dropped fails its tag instead of restoring a wrong file.

Chunk wire form: 12-byte random nonce || ciphertext || 16-byte tag, at most
`MAX_CHUNK_BYTES` in total (Firestore's 1 MiB document limit, with headroom).
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from connector.errors import KeeperError
from connector.settings import BackupKey, Settings

FORMAT = 1
"""zlib-compressed snapshot, split into AES-256-GCM chunks as described above."""

MAX_CHUNK_BYTES = 900 * 1024
NONCE_BYTES = 12
TAG_BYTES = 16
PLAIN_PIECE_BYTES = MAX_CHUNK_BYTES - NONCE_BYTES - TAG_BYTES
COMPRESS_LEVEL = 6


class BackupKeyError(KeeperError):
    """The key a generation needs is not configured, or does not open it."""


class BackupCorruptError(KeeperError):
    """A generation's chunks do not decrypt, decompress or add up to the recorded size."""


@dataclass(frozen=True)
class Sealed:
    """One encrypted snapshot, ready for the store: chunks first, then the manifest."""

    key_id: str
    wrapped_key: bytes = field(repr=False)
    chunks: tuple[bytes, ...] = field(repr=False)


def chunk_aad(account: str, generation: int, index: int, count: int, fmt: int = FORMAT) -> bytes:
    """Associated data of one chunk (canonical JSON: unambiguous for any account id)."""
    return json.dumps(["wa-keeper chunk", fmt, account, generation, index, count]).encode()


def key_aad(account: str, generation: int, key_id: str, fmt: int = FORMAT) -> bytes:
    """Associated data of the wrapped data key: it opens only its own generation."""
    return json.dumps(["wa-keeper data key", fmt, account, generation, key_id]).encode()


def compress(plaintext: bytes) -> bytes:
    return zlib.compress(plaintext, COMPRESS_LEVEL)


def chunk_count(compressed: bytes) -> int:
    """How many chunks `seal_compressed` makes of `compressed` (at least one)."""
    return max(1, -(-len(compressed) // PLAIN_PIECE_BYTES))


class Keyring:
    """The current KEK (encrypts) plus older ones (decrypt only), looked up by key_id."""

    def __init__(self, current: BackupKey, older: Iterable[BackupKey] = ()) -> None:
        self.current = current
        self._by_id = {k.key_id: k for k in older}
        self._by_id[current.key_id] = current

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        return cls(settings.require_backup_key(), settings.old_backup_keys)

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._by_id)

    def seal(self, plaintext: bytes, *, account: str, generation: int) -> Sealed:
        """Compress, encrypt under a fresh data key and split into chunks."""
        return self.seal_compressed(compress(plaintext), account=account, generation=generation)

    def seal_compressed(self, compressed: bytes, *, account: str, generation: int) -> Sealed:
        """`seal` of data already `compress`ed (the vault compresses once, then knows the chunk
        count before it asks the store for a generation number)."""
        data_key = AESGCM.generate_key(bit_length=256)
        pieces = [
            compressed[i : i + PLAIN_PIECE_BYTES] for i in range(0, len(compressed), PLAIN_PIECE_BYTES)
        ] or [b""]
        aead = AESGCM(data_key)
        chunks = []
        for index, piece in enumerate(pieces):
            nonce = os.urandom(NONCE_BYTES)
            aad = chunk_aad(account, generation, index, len(pieces))
            chunks.append(nonce + aead.encrypt(nonce, piece, aad))
        kek_nonce = os.urandom(NONCE_BYTES)
        wrapped = kek_nonce + AESGCM(self.current.material).encrypt(
            kek_nonce, data_key, key_aad(account, generation, self.current.key_id)
        )
        return Sealed(key_id=self.current.key_id, wrapped_key=wrapped, chunks=tuple(chunks))

    def unwrap(self, *, account: str, generation: int, key_id: str, wrapped_key: bytes, fmt: int) -> bytes:
        """The generation's data key; one clear line naming the key_id when it cannot."""
        kek = self._by_id.get(key_id)
        if kek is None:
            raise BackupKeyError(
                f"generation {generation} of {account} needs backup key {key_id}, which is not configured"
                f" (configured: {', '.join(self.key_ids)}; add the old key to WA_KEEPER_BACKUP_OLD_KEYS)"
            )
        try:
            return AESGCM(kek.material).decrypt(
                wrapped_key[:NONCE_BYTES],
                wrapped_key[NONCE_BYTES:],
                key_aad(account, generation, key_id, fmt),
            )
        except (InvalidTag, ValueError) as exc:
            raise BackupKeyError(
                f"generation {generation} of {account}: its data key does not open with backup key {key_id}"
                " (wrong key material, or a manifest altered or copied from another account or generation)"
            ) from exc

    def open(
        self,
        chunks: Sequence[bytes | None],
        *,
        account: str,
        generation: int,
        key_id: str,
        wrapped_key: bytes,
        fmt: int,
        size: int,
    ) -> bytes:
        """Decrypt, join and decompress; any missing, foreign or altered chunk raises."""
        where = f"generation {generation} of {account}"
        if fmt != FORMAT:
            raise BackupCorruptError(f"{where}: unknown backup format {fmt} (this version reads {FORMAT})")
        aead = AESGCM(
            self.unwrap(
                account=account, generation=generation, key_id=key_id, wrapped_key=wrapped_key, fmt=fmt
            )
        )
        pieces = []
        for index, chunk in enumerate(chunks):
            if chunk is None:
                raise BackupCorruptError(f"{where}: chunk {index} of {len(chunks)} is missing")
            if len(chunk) < NONCE_BYTES + TAG_BYTES:
                raise BackupCorruptError(f"{where}: chunk {index} is truncated ({len(chunk)} bytes)")
            try:
                aad = chunk_aad(account, generation, index, len(chunks), fmt)
                pieces.append(aead.decrypt(chunk[:NONCE_BYTES], chunk[NONCE_BYTES:], aad))
            except InvalidTag as exc:
                raise BackupCorruptError(
                    f"{where}: chunk {index} fails authentication (altered, or from another account or generation)"
                ) from exc
        inflater = zlib.decompressobj()
        try:
            plaintext = inflater.decompress(b"".join(pieces), size + 1)
        except zlib.error as exc:
            raise BackupCorruptError(f"{where}: does not decompress ({exc})") from exc
        if len(plaintext) != size or not inflater.eof:
            raise BackupCorruptError(f"{where}: decompresses to a size other than the recorded {size} bytes")
        return plaintext
