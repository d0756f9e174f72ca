"""The audit hash chain: canonical row content, link hashes, the signed head, verify.

Each row's `hash` is SHA-256 over the previous row's hash and the row's canonical
content (sorted-key JSON of every column but the hashes, `seq` included). So a
changed row fails its own hash, a deleted or reordered row breaks the next link,
and rows deleted from the end are caught by the head (count + latest hash), which
is HMAC-signed with a key the database does not hold.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from sync_server.db.identity_models import AuditChainHeadRow, AuditEventRow

GENESIS_HASH = "0" * 64
HEAD_MAC_PURPOSE = "audit-chain-head"

#: Columns covered by the content hash, in a fixed order.
CONTENT_FIELDS = (
    "seq",
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


def _canonical_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    return value


def canonical_content(row: Mapping[Any, Any]) -> bytes:
    content = {name: _canonical_value(row[name]) for name in CONTENT_FIELDS}
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS)


def link_hash(prev_hash: str, row: Mapping[Any, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical_content(row)).hexdigest()


def head_mac(key: bytes, seq: int, head_hash: str) -> str:
    return hmac.new(key, f"{seq}:{head_hash}".encode(), hashlib.sha256).hexdigest()


def chain_rows(
    prev_seq: int, prev_hash: str, rows: Iterable[dict[str, Any]]
) -> tuple[int, str, list[dict[str, Any]]]:
    """Number and link `rows` after the head (`prev_seq`, `prev_hash`)."""
    linked = []
    for row in rows:
        prev_seq += 1
        row = {**row, "seq": prev_seq, "prev_hash": prev_hash}
        prev_hash = row["hash"] = link_hash(prev_hash, row)
        linked.append(row)
    return prev_seq, prev_hash, linked


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows_checked: int
    #: seq of the first row that fails, or the head when the end of the chain is wrong.
    first_broken_seq: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "first_broken_seq": self.first_broken_seq,
            "problem": self.problem,
        }


def verify_chain(session: Session, mac_key: bytes, *, batch: int = 5000) -> VerifyReport:
    """Walk the whole chain in `seq` order and report the first broken link."""
    columns = [AuditEventRow.__table__.c[name] for name in (*CONTENT_FIELDS, "prev_hash", "hash")]
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    last_seq = 0
    while True:
        rows = (
            session.execute(
                select(*columns)
                .where(AuditEventRow.seq > last_seq)
                .order_by(AuditEventRow.seq)
                .limit(batch)
            )
            .mappings()
            .all()
        )
        for row in rows:
            seq = row["seq"]
            if seq != expected_seq:
                return VerifyReport(False, checked, expected_seq, f"row {expected_seq} is missing")
            if row["prev_hash"] != prev_hash:
                return VerifyReport(False, checked, seq, "link to the previous row is broken")
            if link_hash(prev_hash, row) != row["hash"]:
                return VerifyReport(False, checked, seq, "row content does not match its hash")
            prev_hash, expected_seq, last_seq = row["hash"], seq + 1, seq
            checked += 1
        if len(rows) < batch:
            break
    head = session.get(AuditChainHeadRow, 1)
    if head is None or head.seq != checked or head.hash != prev_hash:
        head_seq = head.seq if head is not None else None
        return VerifyReport(
            False, checked, checked + 1, f"chain ends at {checked} but the head says {head_seq}"
        )
    if checked and not hmac.compare_digest(head.mac, head_mac(mac_key, head.seq, head.hash)):
        return VerifyReport(False, checked, head.seq, "chain head signature is not valid")
    return VerifyReport(True, checked)
