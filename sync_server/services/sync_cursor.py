"""The pull cursor: where a workstation is in the feed, signed so it cannot be forged.

A position is `(txid, seq)` of the last delivered `resource_versions` row: the
feed is ordered by writing transaction, then sequence, and only ever reaches
transactions below the oldest one still running, so a transaction that commits
late always sorts after everything already delivered (see `sync_pull`).

The cursor also names the scope it covers (a content-addressed snapshot of
patient ids) and, while patients are being added to it, the backfill's target
scope and position. It is bound to the user it was issued to, and carries an
HMAC-SHA256 under a key held by the server, so a forged, altered or foreign
cursor is refused with a clear error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass, replace
from typing import Any

import orjson
from psycopg import Connection

from shared_models.errors import ValidationFailed
from shared_models.sync_messages import INITIAL_CURSOR

#: Digest of the empty scope (no row needed): where every workstation starts.
EMPTY_SCOPE = "empty"
_VERSION = 1


class CursorInvalid(ValidationFailed):
    """A pull cursor that was not issued by this server to this user, or is no longer usable."""

    user_message = "The sync position is no longer valid. The workstation will download again."
    help_topic = "sync"

    def __init__(self, why: str) -> None:
        super().__init__(why, issues=[("cursor", why)])


@dataclass(frozen=True)
class CursorState:
    txid: int = 0
    seq: int = 0
    scope: str = EMPTY_SCOPE
    #: While a backfill runs: the scope being added and the last key sent.
    target: str | None = None
    after: tuple[str, str, str] | None = None

    @property
    def position(self) -> tuple[int, int]:
        return (self.txid, self.seq)

    @property
    def initial(self) -> bool:
        return self == CursorState()

    def at(self, txid: int, seq: int) -> CursorState:
        return replace(self, txid=txid, seq=seq)


def cursor_key(conn: Connection[Any]) -> bytes:
    row = conn.execute("SELECT secret FROM sync_cursor_keys WHERE id = 1").fetchone()
    if row is None:
        raise RuntimeError("sync cursor key missing: run `ehr-server migrate`")
    return bytes(row[0])


def encode_cursor(key: bytes, username: str, state: CursorState) -> str:
    body = orjson.dumps(
        {
            "v": _VERSION,
            "u": username,
            "t": state.txid,
            "s": state.seq,
            "sc": state.scope,
            "tg": state.target,
            "af": list(state.after) if state.after else None,
        }
    )
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return _b64(body) + "." + _b64(mac)


def decode_cursor(key: bytes, username: str, token: str) -> CursorState:
    """The state a cursor names; `CursorInvalid` when it was not issued to `username` here."""
    if token == INITIAL_CURSOR:
        return CursorState()
    body_part, _, mac_part = token.partition(".")
    try:
        body, mac = _unb64(body_part), _unb64(mac_part)
    except (binascii.Error, ValueError):
        raise CursorInvalid("The cursor is malformed") from None
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
        raise CursorInvalid("The cursor was not issued by this server")
    data = orjson.loads(body)
    if data.get("v") != _VERSION:
        raise CursorInvalid("The cursor is from another version of the protocol")
    if data.get("u") != username:
        raise CursorInvalid("The cursor was issued to another user")
    after = data.get("af")
    return CursorState(
        txid=int(data["t"]),
        seq=int(data["s"]),
        scope=str(data["sc"]),
        target=data.get("tg"),
        after=(str(after[0]), str(after[1]), str(after[2])) if after else None,
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text:
        raise ValueError("empty")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
