"""Backup and restore drill: encrypted `backup`, `restore` into a fresh cluster, all checked.

The source database holds real Synthea resources written through the FHIR
repository (several versions each, a delete, a chained audit trail). After a
restore into a second, freshly initialised PostgreSQL cluster, every row of every
table is identical, the audit table is still append-only for the application
role, and the audit chain verifies with the server secret.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from sqlalchemy.orm import Session

from sync_server.db.embedded import sqlalchemy_url
from sync_server.db.engine import make_engine, migrate
from sync_server.services.audit import ChainedAuditSink
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import FhirRepository
from sync_server.services.server_keys import ServerKeys
from sync_server.services.system_access import SystemGuard

SERVER_SECRET = "backup-drill-server-secret-0123456789abcdef"
TYPES = ("Patient", "Condition", "AllergyIntolerance", "Encounter")


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _populate(url: str, shared_data: Path) -> int:
    """Write resources, versions and a delete; return how many resources exist."""
    engine = make_engine(url)
    migrate(engine)
    keys = ServerKeys(SERVER_SECRET.encode())
    ctx = RequestContext(username="backup-drill", user_id="u-drill", roles=frozenset({"admin"}))
    ndjson = shared_data / "fhir-synthea" / "bulk-ndjson-10-patients"
    with Session(engine) as session:
        repo = FhirRepository(session, ctx, SystemGuard(), ChainedAuditSink(keys))
        repo.ctx = RequestContext.for_system("backup-drill")
        written: list[dict[str, object]] = []
        for resource_type in TYPES:
            lines = (ndjson / f"{resource_type}.000.ndjson").read_bytes().splitlines()[:15]
            for line in lines:
                resource = orjson.loads(line)
                repo.update(resource_type, resource["id"], resource)
                written.append(resource)
        for resource in written[:10]:  # second versions
            resource["meta"] = {"tag": [{"system": "urn:test", "code": "v2"}]}
            repo.update(str(resource["resourceType"]), str(resource["id"]), resource)
        last = written[-1]
        repo.delete(str(last["resourceType"]), str(last["id"]))
        session.commit()
    engine.dispose()
    return len(written)


def _table_contents(url: str) -> dict[str, list[str]]:
    with psycopg.connect(_libpq(url)) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {
            table: sorted(row[0] for row in conn.execute(f'SELECT t::text FROM "{table}" t'))
            for table in tables
        }


@pytest.fixture(scope="module")
def fresh_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second PostgreSQL cluster, initialised for this test only."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg2"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _new_database(cluster_uri: str, name: str) -> str:
    with psycopg.connect(cluster_uri, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, sep, query = cluster_uri.partition("?")
    return sqlalchemy_url(f"{base.rpartition('/')[0]}/{name}{sep}{query}")


@pytest.fixture(scope="module")
def drill(
    create_database, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, Path, int]:
    """(source URL, backup file, key file, resource count) after `ehr-server backup`."""
    source = create_database()
    count = _populate(source, shared_data)
    directory = tmp_path_factory.mktemp("backup")
    key_file = directory / "backup.key"
    key_file.write_bytes(base64.b64encode(os.urandom(32)))
    backup = directory / "clinic.ehrbak"
    result = _cli(["backup", "--out", str(backup), "--key-file", str(key_file)], source)
    assert result.returncode == 0, result.stderr
    return source, backup, key_file, count


def _cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "EHR_SERVER_SECRET": SERVER_SECRET}
    return subprocess.run(
        [sys.executable, "-m", "sync_server.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_backup_file_is_encrypted(drill, shared_data: Path) -> None:
    _, backup, _, _ = drill
    data = backup.read_bytes()
    assert data.startswith(b"EHRBAK01")
    patient = orjson.loads(
        (shared_data / "fhir-synthea/bulk-ndjson-10-patients/Patient.000.ndjson")
        .read_bytes()
        .splitlines()[0]
    )
    family = patient["name"][0]["family"].encode()
    assert family not in data
    assert b"resource_versions" not in data and b"PGDMP" not in data
    assert not list(backup.parent.glob(".*partial"))


def test_restore_into_a_fresh_cluster_is_identical_and_audit_verifies(
    drill, fresh_cluster: str
) -> None:
    source, backup, key_file, count = drill
    target = _new_database(fresh_cluster, "restored")
    result = _cli(["restore", str(backup), "--key-file", str(key_file)], target)
    assert result.returncode == 0, result.stderr

    before, after = _table_contents(source), _table_contents(target)
    assert set(before) == set(after)
    for table in before:
        assert after[table] == before[table], f"{table} differs after restore"
    assert len(after["resources"]) == count
    assert len(after["resource_versions"]) == count + 10 + 1  # 10 updates, 1 delete

    verify = _cli(["audit", "verify"], target)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"Audit chain intact: {len(after['audit_events'])} events verified" in verify.stdout

    with psycopg.connect(_libpq(target)) as conn:
        update, insert = conn.execute(
            "SELECT has_table_privilege('ehr_app', 'audit_events', 'UPDATE'),"
            " has_table_privilege('ehr_app', 'audit_events', 'INSERT')"
        ).fetchone()
    assert (update, insert) == (False, True)


def test_wrong_key_restores_nothing(drill, fresh_cluster: str, tmp_path: Path) -> None:
    _, backup, _, _ = drill
    target = _new_database(fresh_cluster, "wrong_key")
    other_key = tmp_path / "other.key"
    other_key.write_bytes(base64.b64encode(os.urandom(32)))
    result = _cli(["restore", str(backup), "--key-file", str(other_key)], target)
    assert result.returncode == 1
    assert "wrong key" in result.stderr and "nothing was restored" in result.stderr
    assert _table_contents(target) == {}


def test_tampered_backup_restores_nothing(drill, fresh_cluster: str, tmp_path: Path) -> None:
    _, backup, key_file, _ = drill
    data = bytearray(backup.read_bytes())
    data[-100] ^= 0x01  # a byte in the last chunk: the first chunks would still decrypt
    tampered = tmp_path / "tampered.ehrbak"
    tampered.write_bytes(bytes(data))
    target = _new_database(fresh_cluster, "tampered")
    result = _cli(["restore", str(tampered), "--key-file", str(key_file)], target)
    assert result.returncode == 1
    assert "altered" in result.stderr
    assert _table_contents(target) == {}


def test_restore_refuses_a_database_that_is_not_empty(drill) -> None:
    source, backup, key_file, _ = drill
    before = _table_contents(source)
    result = _cli(["restore", str(backup), "--key-file", str(key_file)], source)
    assert result.returncode == 1
    assert "not empty" in result.stderr
    assert _table_contents(source) == before


def test_backup_needs_a_key(drill, tmp_path: Path) -> None:
    source, _, _, _ = drill
    out = tmp_path / "never.ehrbak"
    env_without_key = {k: v for k, v in os.environ.items() if k != "EHR_BACKUP_KEY_FILE"}
    result = subprocess.run(
        [sys.executable, "-m", "sync_server.cli", "backup", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**env_without_key, "DATABASE_URL": source},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "no backup key" in result.stderr
    assert not out.exists()
