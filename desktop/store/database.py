"""Open the SQLCipher database with a raw 256-bit key and the durability pragmas.

`ChartDatabase` hands each thread its own connection (SQLite connections
belong to one thread) and closes them all on `close()`, which is how an idle
lock drops both the key and every open handle.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeAlias, cast

import sqlcipher3

from desktop.store.errors import DatabaseDamaged
from desktop.store.migrations import migrate
from shared_models.errors import StoreError

KEY_BYTES = 32

#: Applied to every connection after the key. `cache_size=-131072` (128 MB)
#: keeps decrypted pages in memory: measured, it makes chart queries as fast
#: as on plain SQLite (DESIGN.md). `cipher_memory_security` stays off (the
#: SQLCipher default): wiping every allocation made bulk inserts ~40x slower.
_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA secure_delete = ON",
    "PRAGMA cache_size = -131072",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
)

#: sqlcipher3 has no type stubs; its connection has the DB-API of `sqlite3`.
Connection: TypeAlias = sqlite3.Connection


def key_pragma(raw_key: bytes) -> str:
    """`PRAGMA key` with a raw key: SQLCipher then skips its own passphrase KDF."""
    if len(raw_key) != KEY_BYTES:
        raise ValueError("database key must be 32 bytes")
    return f"PRAGMA key = \"x'{raw_key.hex()}'\""


def connect(path: Path, raw_key: bytes) -> Connection:
    """One keyed connection with the pragmas, checked to really decrypt the file."""
    conn = cast(
        Connection,
        sqlcipher3.connect(str(path), isolation_level=None, check_same_thread=False),
    )
    try:
        conn.execute(key_pragma(raw_key))
        # The first read proves the key: a wrong key or a damaged file fails here.
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        for pragma in _PRAGMAS:
            conn.execute(pragma)
    except sqlcipher3.DatabaseError as exc:
        conn.close()
        raise DatabaseDamaged(f"cannot open chart database: {exc}") from None
    return conn


class ChartDatabase:
    """The profile's encrypted database: per-thread connections, one key in memory."""

    def __init__(self, path: Path, raw_key: bytes) -> None:
        self.path = path
        self._key = bytearray(raw_key)
        self._lock = threading.Lock()
        self._connections: dict[int, Connection] = {}
        conn = self.connection()
        migrate(conn)

    def connection(self) -> Connection:
        """This thread's connection, opened on first use."""
        ident = threading.get_ident()
        with self._lock:
            conn = self._connections.get(ident)
            if conn is None:
                if not self._key:
                    raise StoreError("chart database is closed")
                conn = connect(self.path, bytes(self._key))
                self._connections[ident] = conn
            return conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT`: the write is durable when the block returns."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def rekey(self, new_key: bytes) -> None:
        """Re-encrypt the whole file under `new_key` (`PRAGMA rekey`)."""
        conn = self.connection()
        with self._lock:
            for ident, other in list(self._connections.items()):
                if other is not conn:
                    other.close()
                    del self._connections[ident]
        # rekey cannot run in WAL mode: checkpoint, switch to a rollback journal, back.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.execute(f"PRAGMA rekey = \"x'{new_key.hex()}'\"")
        conn.execute("PRAGMA journal_mode = WAL")
        self._key[:] = new_key

    def close(self) -> None:
        """Close every connection and forget the key (best effort wipe)."""
        with self._lock:
            for conn in self._connections.values():
                conn.close()
            self._connections.clear()
            for i in range(len(self._key)):
                self._key[i] = 0
            self._key = bytearray()

    @property
    def is_open(self) -> bool:
        return bool(self._key)
