"""Envelope encryption of snapshots: round trip, chunk limits, tampering, keys and rotation."""

from __future__ import annotations

import os

import pytest

from connector.backup_crypto import (
    FORMAT,
    MAX_CHUNK_BYTES,
    BackupCorruptError,
    BackupKeyError,
    Keyring,
    Sealed,
)
from tests.vault_support import new_key

ACCOUNT = "acct-1"


def open_sealed(
    keys: Keyring, sealed: Sealed, size: int, account: str = ACCOUNT, generation: int = 7
) -> bytes:
    return keys.open(
        list(sealed.chunks),
        account=account,
        generation=generation,
        key_id=sealed.key_id,
        wrapped_key=sealed.wrapped_key,
        fmt=FORMAT,
        size=size,
    )


@pytest.mark.parametrize("size", [0, 1, 100_000, MAX_CHUNK_BYTES * 2 + 5])
def test_round_trip_and_chunk_limit(size: int) -> None:
    keys = Keyring(new_key())
    plaintext = os.urandom(size)
    sealed = keys.seal(plaintext, account=ACCOUNT, generation=7)
    assert all(len(c) <= MAX_CHUNK_BYTES for c in sealed.chunks)
    assert open_sealed(keys, sealed, size) == plaintext
    if size >= 16:  # a shorter plaintext can turn up in random ciphertext by chance (1 byte: ~15%)
        assert plaintext[:64] not in b"".join(sealed.chunks)


def test_each_generation_gets_a_fresh_data_key() -> None:
    keys = Keyring(new_key())
    first = keys.seal(b"same", account=ACCOUNT, generation=1)
    second = keys.seal(b"same", account=ACCOUNT, generation=1)
    assert first.wrapped_key != second.wrapped_key
    assert first.chunks != second.chunks


def test_a_flipped_byte_is_detected() -> None:
    keys = Keyring(new_key())
    sealed = keys.seal(os.urandom(5000), account=ACCOUNT, generation=7)
    chunk = bytearray(sealed.chunks[0])
    chunk[len(chunk) // 2] ^= 0x01
    tampered = Sealed(sealed.key_id, sealed.wrapped_key, (bytes(chunk),))
    with pytest.raises(BackupCorruptError, match="chunk 0 fails authentication"):
        open_sealed(keys, tampered, 5000)


@pytest.mark.parametrize(
    ("account", "generation"),
    [("acct-other", 7), (ACCOUNT, 8)],
    ids=["another account", "another generation"],
)
def test_wrong_account_or_generation_is_rejected(account: str, generation: int) -> None:
    keys = Keyring(new_key())
    sealed = keys.seal(os.urandom(100), account=ACCOUNT, generation=7)
    with pytest.raises((BackupCorruptError, BackupKeyError)):
        open_sealed(keys, sealed, 100, account=account, generation=generation)


def test_a_chunk_copied_from_another_generation_is_rejected_by_its_associated_data() -> None:
    """Same data key, chunk from generation 8 dropped into 7: only the AAD can tell."""
    keys = Keyring(new_key())
    big = os.urandom(MAX_CHUNK_BYTES * 2)
    sealed = keys.seal(big, account=ACCOUNT, generation=7)
    # Reordering chunks within one generation: same key, same account, wrong index.
    swapped = Sealed(
        sealed.key_id, sealed.wrapped_key, (sealed.chunks[1], sealed.chunks[0], sealed.chunks[2])
    )
    with pytest.raises(BackupCorruptError, match="chunk 0 fails authentication"):
        open_sealed(keys, swapped, len(big))
    dropped = Sealed(sealed.key_id, sealed.wrapped_key, sealed.chunks[:2])
    with pytest.raises(BackupCorruptError, match="fails authentication"):
        open_sealed(keys, dropped, len(big))


def test_a_missing_chunk_is_named() -> None:
    keys = Keyring(new_key())
    sealed = keys.seal(os.urandom(10), account=ACCOUNT, generation=7)
    with pytest.raises(BackupCorruptError, match="chunk 0 of 1 is missing"):
        keys.open(
            [None],
            account=ACCOUNT,
            generation=7,
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
            fmt=FORMAT,
            size=10,
        )


def test_wrong_key_fails_with_one_line_naming_the_key_id() -> None:
    writer, reader = Keyring(new_key(1)), Keyring(new_key(2))
    sealed = writer.seal(b"secret session", account=ACCOUNT, generation=7)
    with pytest.raises(BackupKeyError) as caught:
        open_sealed(reader, sealed, 14)
    message = str(caught.value)
    assert sealed.key_id in message and "\n" not in message
    assert "secret" not in message


def test_rotation_old_generations_stay_readable_with_the_old_key_as_secondary() -> None:
    old, new = new_key(1), new_key(2)
    sealed_old = Keyring(old).seal(b"old generation", account=ACCOUNT, generation=1)
    rotated = Keyring(new, [old])
    assert open_sealed(rotated, sealed_old, 14, generation=1) == b"old generation"
    sealed_new = rotated.seal(b"new generation", account=ACCOUNT, generation=2)
    assert sealed_new.key_id == new.key_id
    assert open_sealed(Keyring(new), sealed_new, 14, generation=2) == b"new generation"


def test_a_tampered_wrapped_key_names_the_key_id() -> None:
    keys = Keyring(new_key())
    sealed = keys.seal(b"x", account=ACCOUNT, generation=7)
    wrapped = bytearray(sealed.wrapped_key)
    wrapped[-1] ^= 0xFF
    with pytest.raises(BackupKeyError, match=sealed.key_id):
        open_sealed(keys, Sealed(sealed.key_id, bytes(wrapped), sealed.chunks), 1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fmt": 99}, "unknown backup format 99"),
        ({"size": 3}, "size other than the recorded 3"),
        ({"size": 10**6}, "size other than the recorded"),
    ],
)
def test_bad_manifest_values_are_clear_errors(change: dict[str, int], message: str) -> None:
    keys = Keyring(new_key())
    sealed = keys.seal(b"twelve bytes", account=ACCOUNT, generation=7)
    args = {"fmt": FORMAT, "size": 12, **change}
    with pytest.raises(BackupCorruptError, match=message):
        keys.open(
            list(sealed.chunks),
            account=ACCOUNT,
            generation=7,
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
            fmt=args["fmt"],
            size=args["size"],
        )


def test_a_truncated_chunk_is_a_clear_error() -> None:
    keys = Keyring(new_key())
    sealed = keys.seal(b"abc", account=ACCOUNT, generation=7)
    with pytest.raises(BackupCorruptError, match="truncated"):
        keys.open(
            [sealed.chunks[0][:10]],
            account=ACCOUNT,
            generation=7,
            key_id=sealed.key_id,
            wrapped_key=sealed.wrapped_key,
            fmt=FORMAT,
            size=3,
        )
