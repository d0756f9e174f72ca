"""Schema migrations: each version upgrades a database made by the previous one, data intact."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlcipher3

from desktop.store import schema
from desktop.store.database import ChartDatabase, Connection, key_pragma
from desktop.store.keyslots import new_key
from desktop.store.migrations import migrate, schema_version
from shared_models.errors import StoreError


def _raw(path: Path, key: bytes) -> Connection:
    conn = sqlcipher3.connect(str(path), isolation_level=None)
    conn.execute(key_pragma(key))
    return conn


def seed_v1(conn: Connection) -> None:
    conn.execute(
        "INSERT INTO resources (resource_type, id, version_id, patient_id, json, dirty)"
        " VALUES ('Patient', 'p1', 3, 'p1', '{\"resourceType\":\"Patient\",\"id\":\"p1\"}', 1)"
    )
    conn.execute(
        "INSERT INTO patient_index VALUES"
        " (1, 'p1', 'Doe, Ann', 'Doe', 'Ann', 'MRN1', '1970-01-01', 'f')"
    )
    conn.execute("INSERT INTO patient_fts (rowid, names) VALUES (1, 'Ann Doe')")
    conn.execute(
        "INSERT INTO outbox (change_id, resource_type, id, op, base_version, patient_id, json,"
        " created_at)"
        " VALUES ('c1', 'Patient', 'p1', 'upsert', 3, 'p1', '{}', '2026-01-01T00:00:00')"
    )
    conn.execute("INSERT INTO sync_state VALUES ('pull_cursor', 'abc')")


def check_v1(conn: Connection) -> None:
    assert conn.execute("SELECT version_id, dirty FROM resources").fetchall() == [(3, 1)]
    found = conn.execute(
        "SELECT p.patient_id FROM patient_fts f JOIN patient_index p ON p.rowid = f.rowid"
        " WHERE patient_fts MATCH 'ann*'"
    ).fetchall()
    assert found == [("p1",)]
    assert conn.execute("SELECT change_id, base_version FROM outbox").fetchall() == [("c1", 3)]
    assert conn.execute("SELECT value FROM sync_state").fetchall() == [("abc",)]


def seed_v2(conn: Connection) -> None:
    conn.execute("UPDATE resources SET remote_version_id = 4")
    conn.execute(
        "INSERT INTO access_log (username, patient_id, action, at)"
        " VALUES ('nurse', 'p1', 'read', '2026-01-01T00:00:00')"
    )


def check_v2(conn: Connection) -> None:
    assert conn.execute("SELECT remote_version_id FROM resources").fetchall() == [(4,)]
    assert conn.execute("SELECT count(*) FROM access_log").fetchone() == (1,)


def seed_v3(conn: Connection) -> None:
    conn.execute("INSERT INTO slot_index VALUES ('s1', 'sched1', '2027-01-05T13:00:00Z', 'free')")


def check_v3(conn: Connection) -> None:
    assert conn.execute("SELECT slot_id, start FROM slot_index").fetchall() == [
        ("s1", "2027-01-05T13:00:00Z")
    ]


#: Per schema version: put data in, and check it is still there after later upgrades.
SEEDS: dict[int, tuple[Callable[[Connection], None], Callable[[Connection], None]]] = {
    1: (seed_v1, check_v1),
    2: (seed_v2, check_v2),
    3: (seed_v3, check_v3),
}


def test_every_version_has_seed_data() -> None:
    assert sorted(SEEDS) == list(range(1, schema.LATEST_VERSION + 1))


@pytest.mark.parametrize("target", range(2, schema.LATEST_VERSION + 1))
def test_upgrade_from_previous_version_keeps_data(tmp_path: Path, target: int) -> None:
    key = new_key()
    path = tmp_path / "chart.db"
    conn = _raw(path, key)
    migrate(conn, target - 1)
    for version in range(1, target):
        SEEDS[version][0](conn)
    conn.close()
    conn = _raw(path, key)
    assert migrate(conn, target) == target
    assert schema_version(conn) == target
    for version in range(1, target):
        SEEDS[version][1](conn)
    SEEDS[target][0](conn)  # the new version's tables work on the upgraded file
    SEEDS[target][1](conn)
    conn.close()


def test_opening_upgrades_to_latest(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "chart.db"
    conn = _raw(path, key)
    migrate(conn, 1)
    seed_v1(conn)
    conn.close()
    db = ChartDatabase(path, key)
    assert schema_version(db.connection()) == schema.LATEST_VERSION
    check_v1(db.connection())
    db.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "chart.db"
    conn = _raw(path, key)
    migrate(conn)
    conn.execute(f"PRAGMA user_version = {schema.LATEST_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError) as err:
        ChartDatabase(path, key)
    assert "newer version" in err.value.user_message


def test_failed_migration_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = new_key()
    conn = _raw(tmp_path / "chart.db", key)
    migrate(conn, 1)
    broken = (*schema.MIGRATIONS[:1], schema.V2 + ";\nCREATE TABLE resources (x)")
    monkeypatch.setattr("desktop.store.migrations.MIGRATIONS", broken)
    with pytest.raises(sqlcipher3.OperationalError):
        migrate(conn, 2)
    assert schema_version(conn) == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'access_log'").fetchall() == []
