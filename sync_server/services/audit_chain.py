"""The audit hash chain, built in commit order: canonical content, sealing, verify.

Requests only INSERT their `audit_events` rows (in the action's transaction, no
lock). The sealer links rows into `audit_chain` once every transaction older
than them has finished (`txid` below the snapshot's xmin), so a row that commits
late is never skipped, and no request waits for another's commit. Each link is
SHA-256 over the previous link, the event's `pos` and its canonical content
(sorted-key JSON of its columns): a changed, deleted or reordered event breaks
its link. The head (count, latest hash) is HMAC-signed with a key the database
does not hold, so deleting the newest rows is caught too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text

GENESIS_HASH = "0" * 64
HEAD_MAC_PURPOSE = "audit-chain-head"

#: Event columns covered by the link hash.
CONTENT_FIELDS = (
    "id",
    "recorded",
    "username",
    "user_id",
    "roles",
    "workstation_id",
    "source_ip",
    "client_id",
    "action",
    "outcome",
    "resource_type",
    "resource_id",
    "patient_ids",
    "detail",
)
_COLUMNS = ", ".join(f"e.{name}" for name in CONTENT_FIELDS)


def _canonical_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def canonical_content(row: Mapping[Any, Any]) -> bytes:
    content = {name: _canonical_value(row[name]) for name in CONTENT_FIELDS}
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)


def link_hash(prev_hash: str, pos: int, row: Mapping[Any, Any]) -> str:
    payload = f"{prev_hash}\n{pos}\n".encode() + canonical_content(row)
    return hashlib.sha256(payload).hexdigest()


def head_mac(key: bytes, seq: int, head_hash: str) -> str:
    return hmac.new(key, f"{seq}:{head_hash}".encode(), hashlib.sha256).hexdigest()


def seal(conn: Connection, mac_key: bytes, *, wait: bool = True) -> int:
    """Link every finished, unsealed event into the chain; returns how many.

    Run in its own transaction (the caller commits). With `wait=False` it gives
    up at once when another sealer holds the head.
    """
    lock = "FOR UPDATE" if wait else "FOR UPDATE SKIP LOCKED"
    head = conn.execute(
        text(f"SELECT seq, hash, horizon::text FROM audit_chain_head WHERE id = 1 {lock}")  # noqa: S608
    ).first()
    if head is None:
        return 0
    horizon, restored = conn.execute(
        text(
            "SELECT pg_snapshot_xmin(s)::text, CAST(:low AS xid8) > pg_snapshot_xmax(s)"
            " FROM pg_current_snapshot() s"
        ),
        {"low": head.horizon},
    ).one()
    # A horizon from the future: the database was restored onto another cluster, whose
    # transaction ids restart. Once, chain every event not chained yet (all are finished).
    window = (
        "NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_pos = e.pos)"
        if restored
        else "e.txid >= CAST(:low AS xid8) AND e.txid < CAST(:high AS xid8)"
    )
    rows = conn.execute(
        text(f"SELECT e.pos, {_COLUMNS} FROM audit_events e WHERE {window} ORDER BY e.pos"),  # noqa: S608
        {"low": head.horizon, "high": horizon},
    ).mappings()
    seq, prev, links = head.seq, head.hash, []
    for row in rows:
        seq += 1
        link = link_hash(prev, row["pos"], row)
        links.append({"seq": seq, "pos": row["pos"], "prev": prev, "hash": link})
        prev = link
    if links:
        conn.execute(
            text(
                "INSERT INTO audit_chain (seq, event_pos, prev_hash, hash)"
                " VALUES (:seq, :pos, :prev, :hash)"
            ),
            links,
        )
    conn.execute(
        text(
            "UPDATE audit_chain_head SET seq = :seq, hash = :hash, mac = :mac,"
            " horizon = CAST(:horizon AS xid8) WHERE id = 1"
        ),
        {"seq": seq, "hash": prev, "mac": head_mac(mac_key, seq, prev), "horizon": horizon},
    )
    return len(links)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows_checked: int
    #: Chain position of the first link that fails (or where the head disagrees).
    first_broken_seq: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "first_broken_seq": self.first_broken_seq,
            "problem": self.problem,
        }


_WALK = text(
    f"SELECT c.seq, c.event_pos, c.prev_hash, c.hash, e.pos AS found, {_COLUMNS}"  # noqa: S608
    " FROM audit_chain c LEFT JOIN audit_events e ON e.pos = c.event_pos"
    " WHERE c.seq > :after ORDER BY c.seq LIMIT :batch"
)
_OUTSIDE = text(
    "SELECT count(*) FROM audit_events e, audit_chain_head h WHERE h.id = 1"
    " AND e.txid < h.horizon AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_pos = e.pos)"
)


def verify_chain(conn: Connection, mac_key: bytes, *, batch: int = 5000) -> VerifyReport:
    """Walk the whole chain and report the first broken link (seal first to include new rows)."""
    expected, prev, checked = 1, GENESIS_HASH, 0
    while True:
        rows = conn.execute(_WALK, {"after": expected - 1, "batch": batch}).mappings().all()
        for row in rows:
            seq = row["seq"]
            if seq != expected:
                return VerifyReport(False, checked, expected, f"link {expected} is missing")
            if row["prev_hash"] != prev:
                return VerifyReport(False, checked, seq, "link to the previous event is broken")
            if row["found"] is None:
                return VerifyReport(False, checked, seq, "the event of this link is missing")
            if link_hash(prev, row["event_pos"], row) != row["hash"]:
                return VerifyReport(False, checked, seq, "event content does not match its link")
            prev, expected, checked = row["hash"], seq + 1, checked + 1
        if len(rows) < batch:
            break
    head = conn.execute(text("SELECT seq, hash, mac FROM audit_chain_head WHERE id = 1")).first()
    if head is None or head.seq != checked or head.hash != prev:
        claimed = head.seq if head is not None else None
        return VerifyReport(
            False, checked, checked + 1, f"chain ends at {checked} but the head says {claimed}"
        )
    if checked and not hmac.compare_digest(head.mac, head_mac(mac_key, head.seq, head.hash)):
        return VerifyReport(False, checked, head.seq, "chain head signature is not valid")
    outside = conn.execute(_OUTSIDE).scalar()
    if outside:
        return VerifyReport(False, checked, checked + 1, f"{outside} events are outside the chain")
    return VerifyReport(True, checked)
