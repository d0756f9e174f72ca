"""The audit trail on a real PostgreSQL: append-only for the app role, tamper-evident,
and chained correctly when transactions commit out of order."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from sync_server.db.engine import make_engine, migrate
from sync_server.services.audit import ChainedAuditSink, seal_now
from sync_server.services.audit_chain import HEAD_MAC_PURPOSE, verify_chain
from sync_server.services.context import RequestContext
from sync_server.services.server_keys import ServerKeys

KEYS = ServerKeys(b"k" * 32)
SINK = ChainedAuditSink(KEYS)
CTX = RequestContext(username="dr.ada", user_id="u1", roles=frozenset({"physician"}))


def _record(engine: Engine, patient: str) -> None:
    with Session(engine) as session:
        SINK.record(
            session, CTX, action="read", outcome="success", resource_type="Patient",
            resource_id=patient, patient_ids=[patient],
        )  # fmt: skip
        session.commit()


@pytest.fixture(scope="module")
def audited_db(create_database: Callable[[], str]) -> Iterator[tuple[Engine, str]]:
    url = create_database()
    engine = make_engine(url, pool_size=4)
    migrate(engine)
    for i in range(6):
        _record(engine, f"p{i}")
    seal_now(engine, KEYS)
    yield engine, url.replace("postgresql+psycopg://", "postgresql://")
    engine.dispose()


def _verify(engine: Engine) -> dict[str, object]:
    seal_now(engine, KEYS)
    with engine.connect() as conn:
        return verify_chain(conn, KEYS.derive(HEAD_MAC_PURPOSE)).as_dict()


def _tampered_report(libpq: str, statements: list[str]) -> dict[str, object]:
    """Tamper the way a DBA could (owner, triggers off), verify, then roll it all back."""
    owner = create_engine(libpq.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with owner.connect() as conn:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            for statement in statements:
                conn.exec_driver_sql(statement)
            report = verify_chain(conn, KEYS.derive(HEAD_MAC_PURPOSE)).as_dict()
            conn.rollback()
        return report
    finally:
        owner.dispose()


def test_intact_chain_verifies(audited_db: tuple[Engine, str]) -> None:
    report = _verify(audited_db[0])
    assert report["ok"] is True and report["first_broken_seq"] is None
    assert report["rows_checked"] == 6


def test_app_role_cannot_update_delete_or_truncate(audited_db: tuple[Engine, str]) -> None:
    engine, _ = audited_db
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == "ehr_app"
    for statement in (
        "UPDATE audit_events SET outcome = 'x' WHERE pos = 1",
        "DELETE FROM audit_events WHERE pos = 1",
        "TRUNCATE audit_events",
        "DELETE FROM audit_chain WHERE seq = 1",
        "UPDATE audit_chain SET hash = 'x' WHERE seq = 1",
    ):
        with engine.connect() as conn, pytest.raises(DBAPIError, match="permission denied"):
            conn.execute(text(statement))
    assert _verify(engine)["ok"] is True


def test_trigger_refuses_changes_even_for_the_owner(audited_db: tuple[Engine, str]) -> None:
    _, libpq = audited_db
    with psycopg.connect(libpq) as conn, pytest.raises(psycopg.Error, match="append-only"):
        conn.execute("DELETE FROM audit_events WHERE pos = 2")


@pytest.mark.parametrize(
    ("statements", "broken_seq"),
    [
        (["UPDATE audit_events SET resource_id = 'other' WHERE pos = 3"], 3),
        (["DELETE FROM audit_events WHERE pos = 4"], 4),
        (
            [  # swap two events' positions
                "UPDATE audit_events SET pos = -2 WHERE pos = 2",
                "UPDATE audit_events SET pos = 2 WHERE pos = 5",
                "UPDATE audit_events SET pos = 5 WHERE pos = -2",
            ],
            2,
        ),
        (["DELETE FROM audit_chain WHERE seq = 3"], 3),
        (["DELETE FROM audit_events WHERE pos >= 5", "DELETE FROM audit_chain WHERE seq >= 5"], 5),
        (
            [  # delete the newest rows and roll the head back to match (no HMAC key)
                "DELETE FROM audit_events WHERE pos >= 5",
                "DELETE FROM audit_chain WHERE seq >= 5",
                "UPDATE audit_chain_head SET seq = 4,"
                " hash = (SELECT hash FROM audit_chain WHERE seq = 4)",
            ],
            4,
        ),
    ],
    ids=["change", "delete", "reorder", "delete-link", "delete-newest", "delete-newest-fix-head"],
)
def test_tampering_is_detected(
    audited_db: tuple[Engine, str], statements: list[str], broken_seq: int
) -> None:
    engine, libpq = audited_db
    report = _tampered_report(libpq, statements)
    assert report["ok"] is False
    assert report["first_broken_seq"] == broken_seq
    assert _verify(engine)["ok"] is True  # rolled back: the real chain is intact


def test_late_committer_is_chained_not_skipped(create_database: Callable[[], str]) -> None:
    """An event whose transaction commits after later ones were sealed still gets its link."""
    engine = make_engine(create_database(), pool_size=8)
    migrate(engine)
    inserted, release = threading.Event(), threading.Event()

    def slow_request() -> None:
        with Session(engine) as session:
            SINK.record(session, CTX, action="read", outcome="success", patient_ids=["slow"])
            inserted.set()
            release.wait(timeout=30)
            session.commit()

    slow = threading.Thread(target=slow_request)
    slow.start()
    inserted.wait(timeout=30)
    workers = [threading.Thread(target=_record, args=(engine, f"q{i}")) for i in range(20)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    seal_now(engine, KEYS)  # the slow transaction holds the horizon back
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_chain")).scalar() == 0
    release.set()
    slow.join(timeout=30)
    report = _verify(engine)
    with engine.connect() as conn:
        chained = conn.execute(text("SELECT count(DISTINCT event_pos) FROM audit_chain")).scalar()
    engine.dispose()
    assert report["ok"] is True and report["rows_checked"] == 21 and chained == 21
