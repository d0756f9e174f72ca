"""Streaming authenticated encryption of backup files (AES-256-GCM in chunks).

AES-GCM in `cryptography` is one-shot, and a database dump may not fit in
memory, so the dump is cut into 1 MiB chunks, each sealed on its own. The
layout is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015):

    header  = MAGIC (8 bytes) || salt (16 bytes)
    chunk_i = length (4 bytes, big-endian) || AES-GCM(k, nonce_i, plaintext_i, aad=header)
    nonce_i = i (11 bytes, big-endian) || final flag (1 byte: 1 on the last chunk)

`k` is derived from the key IT provides with HKDF-SHA256 over the random salt,
so every file has its own key and the counter nonces never repeat under it.
Reordered, dropped, changed or truncated chunks, a different key, or bytes
after the end all fail with `BackupCorrupt`; a reader never gets unauthenticated
plaintext from a chunk.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"EHRBAK01"
SALT_BYTES = 16
CHUNK_BYTES = 1024 * 1024
_TAG_BYTES = 16


class BackupCorrupt(Exception):
    """The backup is damaged, truncated, or was encrypted with another key."""


def load_key(path: Path) -> bytes:
    """Read the 256-bit backup key: base64 text (e.g. `openssl rand -base64 32`) or raw bytes."""
    data = path.read_bytes()
    if len(data) == 32:
        return data
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"{path.name} must hold a 256-bit key (32 bytes, or base64 of them)")
    return key


def _file_key(key: bytes, salt: bytes) -> AESGCM:
    derived = HKDF(hashes.SHA256(), 32, salt=salt, info=b"ehr-server backup v1").derive(key)
    return AESGCM(derived)


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _lookahead(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Yield (chunk, is_last); an empty input yields one empty final chunk."""
    iterator = iter(chunks)
    current = next(iterator, b"")
    for following in iterator:
        yield current, False
        current = following
    yield current, True


def read_chunks(source: IO[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    while True:
        block = source.read(size)
        if not block:
            return
        while len(block) < size:  # pipes return short reads: fill the chunk
            more = source.read(size - len(block))
            if not more:
                break
            block += more
        yield block


def encrypt_stream(key: bytes, plaintext: Iterable[bytes], out: IO[bytes]) -> None:
    salt = os.urandom(SALT_BYTES)
    header = MAGIC + salt
    aead = _file_key(key, salt)
    out.write(header)
    for index, (chunk, final) in enumerate(_lookahead(plaintext)):
        sealed = aead.encrypt(_nonce(index, final), chunk, header)
        out.write(len(sealed).to_bytes(4, "big"))
        out.write(sealed)


def decrypt_stream(key: bytes, source: IO[bytes]) -> Iterator[bytes]:
    """Yield authenticated plaintext chunks; raise `BackupCorrupt` on any defect."""
    header = source.read(len(MAGIC) + SALT_BYTES)
    if len(header) != len(MAGIC) + SALT_BYTES or not header.startswith(MAGIC):
        raise BackupCorrupt("not an ehr-server backup file")
    aead = _file_key(key, header[len(MAGIC) :])
    index = 0
    while True:
        length_bytes = source.read(4)
        if len(length_bytes) != 4:
            raise BackupCorrupt("the backup is truncated")
        length = int.from_bytes(length_bytes, "big")
        if not _TAG_BYTES <= length <= CHUNK_BYTES + _TAG_BYTES:
            raise BackupCorrupt("the backup is damaged (bad chunk length)")
        sealed = source.read(length)
        if len(sealed) != length:
            raise BackupCorrupt("the backup is truncated")
        for final in (False, True):
            try:
                chunk = aead.decrypt(_nonce(index, final), sealed, header)
            except InvalidTag:
                continue
            break
        else:
            raise BackupCorrupt(
                "the backup cannot be decrypted: wrong key, or the file was altered"
            )
        yield chunk
        if final:
            if source.read(1):
                raise BackupCorrupt("the backup has unexpected data after its end")
            return
        index += 1
