"""Audited commits per second: the audit sink (chained in commit order) beside a plain insert.

Each "request" is one transaction that records one audit row and commits, from
16 threads at once (the shape of 1,000+ audited reads/s). The raw limit is the
same row inserted into an unchained copy of the table. The sink's cost on top
is the opportunistic sealing after commits; the chain is verified at the end.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from sync_server.db.engine import make_engine, migrate
from sync_server.services.audit import ChainedAuditSink, seal_now
from sync_server.services.audit_chain import HEAD_MAC_PURPOSE, verify_chain
from sync_server.services.context import RequestContext
from sync_server.services.server_keys import ServerKeys

THREADS = 16
PER_THREAD = 150
CTX = RequestContext(
    username="dr.bench", user_id="u", roles=frozenset({"physician"}), workstation_id="ws-1"
)


def _rate(engine: Engine, one: Callable[[Session, int], None]) -> float:
    def worker(n: int) -> None:
        for i in range(PER_THREAD):
            with Session(engine) as session:
                one(session, n * PER_THREAD + i)
                session.commit()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return THREADS * PER_THREAD / (time.perf_counter() - started)


@pytest.mark.benchmark
def test_chained_audit_commit_rate(create_database: Callable[[], str]) -> None:
    engine = make_engine(create_database(), pool_size=THREADS)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("RESET ROLE"))
        conn.execute(text("CREATE TABLE audit_raw (LIKE audit_events INCLUDING INDEXES)"))
        conn.execute(text("GRANT INSERT, SELECT ON audit_raw TO ehr_app"))
    engine.dispose()
    keys = ServerKeys(b"b" * 32)
    sink = ChainedAuditSink(keys)

    def raw(session: Session, n: int) -> None:
        session.execute(
            text(
                "INSERT INTO audit_raw (pos, txid, id, recorded, username, roles, action,"
                " outcome, patient_ids, detail) VALUES (:n, pg_current_xact_id(), :id, :t,"
                " 'dr.bench', '{physician}', 'read', 'success', ARRAY[:p], '{}')"
            ),
            {"n": n, "id": str(uuid.uuid4()), "t": datetime.now(UTC), "p": f"p{n % 50}"},
        )

    def chained(session: Session, n: int) -> None:
        sink.record(
            session, CTX, action="read", outcome="success", resource_type="Patient",
            resource_id=f"p{n % 50}", patient_ids=[f"p{n % 50}"],
        )  # fmt: skip

    raw_rate = _rate(engine, raw)
    chained_rate = _rate(engine, chained)
    seal_now(engine, keys)
    with engine.connect() as conn:
        report = verify_chain(conn, keys.derive(HEAD_MAC_PURPOSE))
    engine.dispose()
    print(
        f"\naudited commits/s from {THREADS} threads: sink {chained_rate:,.0f}"
        f" vs raw limit (unchained insert) {raw_rate:,.0f}"
        f" ({chained_rate / raw_rate:.0%}); target 1,000+ audited reads/s"
    )
    assert report.ok and report.rows_checked == THREADS * PER_THREAD
