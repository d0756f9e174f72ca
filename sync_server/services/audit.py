"""The real `AuditSink`: every audited action becomes an `audit_events` row.

Concurrency design (see docs/security.md): a successful action's audit row is
inserted in the action's own transaction, with no lock, so they commit together
or not at all and requests never wait for each other. The hash chain is built
afterwards in commit order by the sealer (`audit_chain.seal`), which runs right
after a commit at most every `SEAL_INTERVAL` seconds per process (skipping when
another process is sealing) and before every `audit verify`.

A denial or failure is written in its own short transaction, so it survives
even when the request's transaction is rolled back.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import weakref
from datetime import UTC, datetime
from typing import Any, cast

from psycopg.types.json import Jsonb
from sqlalchemy import Engine, Table, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from sync_server.db.engine import driver_connection, make_engine
from sync_server.db.identity_models import AuditEventRow
from sync_server.services.audit_chain import HEAD_MAC_PURPOSE, seal
from sync_server.services.context import RequestContext
from sync_server.services.server_keys import ServerKeys

log = logging.getLogger(__name__)

SUCCESS = "success"
SEAL_INTERVAL = 0.2
_AUDITED = "audit_mac_key"
#: Plain SQL on the driver connection: this runs on every audited read, where
#: SQLAlchemy's statement and result machinery cost more CPU than the INSERT.
_INSERT = (
    "INSERT INTO audit_events (id, recorded, username, user_id, roles, workstation_id,"
    " source_ip, client_id, action, outcome, resource_type, resource_id, patient_ids, detail)"
    " VALUES (%(id)s, %(recorded)s, %(username)s, %(user_id)s, %(roles)s::text[],"
    " %(workstation_id)s, %(source_ip)s, %(client_id)s, %(action)s, %(outcome)s,"
    " %(resource_type)s, %(resource_id)s, %(patient_ids)s::text[], %(detail)s)"
)


def engine_of(session: Session) -> Engine:
    bind = session.get_bind()
    return bind.engine


_failure_engines: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_failure_engines_lock = threading.Lock()


def _failure_engine(engine: Engine) -> Engine:
    """A small pool of its own for denial and failure records.

    Those are written while the request still holds its connection. Drawn from
    the request pool, a burst of failing requests would each hold one connection
    and wait for a second: the pool runs dry and they all time out together.
    """
    with _failure_engines_lock:
        own = _failure_engines.get(engine)
        if own is None:
            url = engine.url.render_as_string(hide_password=False)
            own = _failure_engines[engine] = make_engine(url, pool_size=4)
        return own


class ChainedAuditSink:
    """Implements `sync_server.services.context.AuditSink`."""

    def __init__(self, server_keys: ServerKeys) -> None:
        self._keys = server_keys

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
            self._insert(session, row)
            return
        # The request's transaction may roll back: keep the denial or failure anyway.
        with Session(_failure_engine(engine_of(session))) as own:
            self._insert(own, row)
            own.commit()

    def record_past(
        self,
        session: Session,
        ctx: RequestContext,
        events: list[tuple[str, datetime, str, str, dict[str, Any]]],
    ) -> set[str]:
        """Record events that happened earlier (offline reads), idempotent by event id.

        `events` are `(event_id, when, action, patient_id, detail)`, all successes
        in the caller's transaction. An id already in the trail is skipped; the
        ids stored now are returned.
        """
        rows = []
        for event_id, when, action, patient_id, detail in events:
            row = self._row(ctx, action, SUCCESS, "Patient", patient_id, None, detail)
            rows.append(row | {"id": event_id, "recorded": when})
        if not rows:
            return set()
        stmt = (
            pg_insert(cast(Table, AuditEventRow.__table__))
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(AuditEventRow.__table__.c.id)
        )
        stored = {str(r[0]) for r in session.execute(stmt, rows)}
        if stored:
            session.info[_AUDITED] = self._keys.derive(HEAD_MAC_PURPOSE)
        return stored

    def _insert(self, session: Session, row: dict[str, Any]) -> None:
        driver_connection(session).execute(_INSERT, {**row, "detail": Jsonb(row["detail"])})
        session.info[_AUDITED] = self._keys.derive(HEAD_MAC_PURPOSE)

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


_last_seal = 0.0
_seal_lock = threading.Lock()


@event.listens_for(Session, "after_commit")
def _seal_soon(session: Session) -> None:
    """After a commit with audit rows, seal the chain unless that happened very recently."""
    global _last_seal
    mac_key: bytes | None = session.info.pop(_AUDITED, None)
    if mac_key is None:
        return
    with _seal_lock:
        if time.monotonic() - _last_seal < SEAL_INTERVAL:
            return
        _last_seal = time.monotonic()
    try:
        with engine_of(session).connect() as conn:
            seal(conn, mac_key, wait=False)
            conn.commit()
    except Exception:  # the rows are safe; the next seal or `audit verify` links them
        log.warning("audit chain sealing deferred", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_AUDITED, None)


def seal_now(engine: Engine, server_keys: ServerKeys) -> int:
    """Link every finished event into the chain now (before verifying or exporting)."""
    with engine.connect() as conn:
        sealed = seal(conn, server_keys.derive(HEAD_MAC_PURPOSE))
        conn.commit()
    return sealed
