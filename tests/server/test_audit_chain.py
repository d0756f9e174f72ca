"""The audit trail on a real PostgreSQL: append-only for the app role, tamper-evident."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from sync_server.db.engine import make_engine, migrate
from sync_server.services.audit import ChainedAuditSink
from sync_server.services.audit_chain import HEAD_MAC_PURPOSE, verify_chain
from sync_server.services.context import RequestContext
from sync_server.services.server_keys import ServerKeys

KEYS = ServerKeys(b"k" * 32)
CTX = RequestContext(username="dr.ada", user_id="u1", roles=frozenset({"physician"}))


@pytest.fixture(scope="module")
def audited_db(create_database: Callable[[], str]) -> Iterator[tuple[Engine, str]]:
    url = create_database()
    engine = make_engine(url, pool_size=2)
    migrate(engine)
    sink = ChainedAuditSink(KEYS)
    for i in range(6):
        with Session(engine) as session:
            sink.record(
                session,
                CTX,
                action="read",
                outcome="success",
                resource_type="Patient",
                resource_id=f"p{i}",
                patient_ids=[f"p{i}"],
            )
            session.commit()
    yield engine, url.replace("postgresql+psycopg://", "postgresql://")
    engine.dispose()


def _verify(engine: Engine) -> dict[str, object]:
    with Session(engine) as session:
        return verify_chain(session, KEYS.derive(HEAD_MAC_PURPOSE)).as_dict()


def _tampered_report(libpq: str, statements: list[str]) -> dict[str, object]:
    """Tamper the way a DBA could (owner, triggers off), verify, then roll it all back."""
    owner = create_engine(libpq.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with owner.connect() as conn:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            for statement in statements:
                conn.exec_driver_sql(statement)
            with Session(bind=conn) as session:
                report = verify_chain(session, KEYS.derive(HEAD_MAC_PURPOSE)).as_dict()
            conn.rollback()
        return report
    finally:
        owner.dispose()


def test_intact_chain_verifies(audited_db: tuple[Engine, str]) -> None:
    report = _verify(audited_db[0])
    assert report == {"ok": True, "rows_checked": 6, "first_broken_seq": None, "problem": None}


def test_app_role_cannot_update_delete_or_truncate(audited_db: tuple[Engine, str]) -> None:
    engine, _ = audited_db
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == "ehr_app"
    for statement in (
        "UPDATE audit_events SET outcome = 'x' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 1",
        "TRUNCATE audit_events",
    ):
        with engine.connect() as conn, pytest.raises(DBAPIError, match="permission denied"):
            conn.execute(text(statement))
    assert _verify(engine)["ok"] is True


def test_trigger_refuses_changes_even_for_the_owner(audited_db: tuple[Engine, str]) -> None:
    _, libpq = audited_db
    with psycopg.connect(libpq) as conn, pytest.raises(psycopg.Error, match="append-only"):
        conn.execute("DELETE FROM audit_events WHERE seq = 2")


@pytest.mark.parametrize(
    ("statements", "broken_seq"),
    [
        (["UPDATE audit_events SET resource_id = 'other' WHERE seq = 3"], 3),
        (["DELETE FROM audit_events WHERE seq = 4"], 4),
        (
            [  # swap two rows' positions
                "UPDATE audit_events SET seq = -2 WHERE seq = 2",
                "UPDATE audit_events SET seq = 2 WHERE seq = 5",
                "UPDATE audit_events SET seq = 5 WHERE seq = -2",
            ],
            2,
        ),
        (["DELETE FROM audit_events WHERE seq >= 5"], 5),
        (
            [  # delete the newest rows and roll the head back to match (no HMAC key)
                "DELETE FROM audit_events WHERE seq >= 5",
                "UPDATE audit_chain_head SET seq = 4,"
                " hash = (SELECT hash FROM audit_events WHERE seq = 4)",
            ],
            4,
        ),
    ],
    ids=["change", "delete", "reorder", "delete-newest", "delete-newest-and-rewrite-head"],
)
def test_tampering_is_detected(
    audited_db: tuple[Engine, str], statements: list[str], broken_seq: int
) -> None:
    engine, libpq = audited_db
    report = _tampered_report(libpq, statements)
    assert report["ok"] is False
    assert report["first_broken_seq"] == broken_seq
    assert _verify(engine)["ok"] is True  # rolled back: the real chain is intact
