"""The real `AuditSink`: every audited action becomes a hash-chained `audit_events` row.

Concurrency design (see docs/security.md): `record()` only queues the row on the
session. Just before the session commits, a `before_commit` hook locks the chain
head row (`SELECT ... FOR UPDATE`), numbers and links the queued rows after it,
inserts them and moves the signed head, then the commit releases the lock. The
chain is therefore in commit order and gap-free, while the rest of each request
(queries, JSON, the action itself) runs fully in parallel: only a few
milliseconds around the commit are serialized.

Successful actions are audited in the caller's transaction, so the action and
its audit row commit together or not at all. A denial or failure is written in
its own short transaction, because the request's transaction is rolled back.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, event, insert, select, text, update
from sqlalchemy.orm import Session

from sync_server.db.identity_models import AuditChainHeadRow, AuditEventRow
from sync_server.services.audit_chain import (
    GENESIS_HASH,
    HEAD_MAC_PURPOSE,
    chain_rows,
    head_mac,
)
from sync_server.services.context import RequestContext
from sync_server.services.server_keys import ServerKeys

log = logging.getLogger(__name__)

_PENDING = "audit_pending"
_MAC_KEY = "audit_mac_key"
SUCCESS = "success"


def engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind.engine


class ChainedAuditSink:
    """Implements `sync_server.services.context.AuditSink`."""

    def __init__(self, server_keys: ServerKeys) -> None:
        self._mac_key = server_keys.derive(HEAD_MAC_PURPOSE)

    def record(
        self,
        session: Session,
        ctx: RequestContext,
        *,
        action: str,
        outcome: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
        patient_ids: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        row = self._row(ctx, action, outcome, resource_type, resource_id, patient_ids, detail)
        if outcome == SUCCESS:
            queue(session, row, self._mac_key)
            return
        # The request's transaction is about to roll back: keep the denial anyway.
        with Session(engine_of(session)) as own:
            queue(own, row, self._mac_key)
            own.commit()

    @staticmethod
    def _row(
        ctx: RequestContext,
        action: str,
        outcome: str,
        resource_type: str | None,
        resource_id: str | None,
        patient_ids: list[str] | None,
        detail: dict[str, Any] | None,
    ) -> dict[str, Any]:
        patients = set(patient_ids or [])
        if resource_type == "Patient" and resource_id:
            patients.add(resource_id)  # a Patient is in its own compartment (denials too)
        detail = dict(detail or {})
        reasons = {p: ctx.break_glass[p] for p in sorted(patients) if p in ctx.break_glass}
        if reasons:
            detail["break_glass_reasons"] = reasons
        if ctx.scopes is not None:
            detail["scopes"] = " ".join(sorted(ctx.scopes))
        return {
            "id": str(uuid.uuid4()),
            "recorded": datetime.now(UTC),
            "username": ctx.username,
            "user_id": ctx.user_id,
            "roles": sorted(ctx.roles),
            "workstation_id": ctx.workstation_id,
            "source_ip": ctx.source_ip,
            "client_id": ctx.client_id,
            "action": action,
            "outcome": outcome,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "patient_ids": sorted(patients),
            "detail": detail,
        }


def queue(session: Session, row: dict[str, Any], mac_key: bytes) -> None:
    """Queue an audit row on `session`; it is chained and inserted just before commit."""
    session.info.setdefault(_PENDING, []).append(row)
    session.info[_MAC_KEY] = mac_key


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    mac_key: bytes | None = session.info.pop(_MAC_KEY, None)
    if not pending or mac_key is None:
        return
    head = session.execute(
        select(AuditChainHeadRow.seq, AuditChainHeadRow.hash)
        .where(AuditChainHeadRow.id == 1)
        .with_for_update()
    ).first()
    if head is None:
        raise RuntimeError("audit chain head missing: run `ehr-server migrate`")
    seq, last_hash, rows = chain_rows(head.seq, head.hash, pending)
    # One round trip for the rows and the new head: the lock is held until commit.
    moved = (
        update(AuditChainHeadRow)
        .where(AuditChainHeadRow.id == 1)
        .values(seq=seq, hash=last_hash, mac=head_mac(mac_key, seq, last_hash))
        .cte("moved_head")
    )
    session.execute(
        insert(AuditEventRow).values(rows).add_cte(moved),
        execution_options={"synchronize_session": False},
    )


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    # A rolled-back action was not done: its success audit rows go with it.
    session.info.pop(_PENDING, None)


def chain_is_empty(session: Session) -> bool:
    head = session.execute(text("SELECT seq, hash FROM audit_chain_head WHERE id = 1")).first()
    return head is None or (head.seq == 0 and head.hash == GENESIS_HASH)
