"""The backup file format: chunked AES-256-GCM that detects any change, cut or reorder."""

from __future__ import annotations

import io
import os

import pytest

from sync_server.backup_stream import (
    MAGIC,
    SALT_BYTES,
    BackupCorrupt,
    decrypt_stream,
    encrypt_stream,
)

KEY = os.urandom(32)
HEADER = len(MAGIC) + SALT_BYTES


def _encrypt(chunks: list[bytes], key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    encrypt_stream(key, chunks, out)
    return out.getvalue()


def _decrypt(data: bytes, key: bytes = KEY) -> bytes:
    return b"".join(decrypt_stream(key, io.BytesIO(data)))


def _frames(data: bytes) -> list[bytes]:
    """Split a backup into its length-prefixed chunk frames (after the header)."""
    frames, pos = [], HEADER
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        frames.append(data[pos : pos + 4 + length])
        pos += 4 + length
    return frames


CHUNKS = [os.urandom(1000), b"PGDMP patient rows", os.urandom(10)]


def test_round_trip_keeps_every_byte_and_hides_the_plaintext() -> None:
    data = _encrypt(CHUNKS)
    assert _decrypt(data) == b"".join(CHUNKS)
    assert b"PGDMP" not in data and b"patient" not in data
    assert _decrypt(_encrypt([])) == b""


def test_two_backups_of_the_same_data_differ() -> None:
    assert _encrypt(CHUNKS) != _encrypt(CHUNKS)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d, f: d[:HEADER] + b"".join(f[:-1]), "truncated"),  # last chunk dropped
        (lambda d, f: d[:HEADER] + f[1] + f[0] + f[2], "wrong key, or the file was altered"),
        (lambda d, f: d + b"x", "after its end"),
        (
            lambda d, f: d[: HEADER + 10] + bytes([d[HEADER + 10] ^ 1]) + d[HEADER + 11 :],
            "wrong key, or the file was altered",
        ),
        (lambda d, f: b"NOTABACK" + d[8:], "not an ehr-server backup"),
        (lambda d, f: d[:-3], "truncated"),
    ],
)
def test_any_damage_is_detected(mutate, message: str) -> None:
    data = _encrypt(CHUNKS)
    with pytest.raises(BackupCorrupt, match=message):
        _decrypt(mutate(data, _frames(data)))


def test_another_key_cannot_read_it() -> None:
    with pytest.raises(BackupCorrupt, match="wrong key"):
        _decrypt(_encrypt(CHUNKS), os.urandom(32))
