"""FHIR reads and a typical chart search through a real `ehr-server serve` (2 workers), 16 clients.

Each figure is printed beside the raw rate of the same queries issued directly
with psycopg on the same database from 16 threads (the ratio is the figure).
The server path is the production one: bearer sign-in, access guard with
location scoping, and an audit event per read. The HTTP load comes from a
separate process (`http_load.py`) so it does not share a GIL with anything;
the CPU both sides spend per request is printed too, since on a shared
machine the rate swings with other work while the CPU per request does not
(2 cores / server CPU per request bounds the rate). Target (DESIGN.md):
1,000+ requests/s on 2 cores. Printed, never asserted.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from sync_server.cli import system_repository
from sync_server.db.engine import make_engine, make_sessionmaker, migrate
from sync_server.services.demo_seed import seed_demo
from sync_server.services.search import parse_search, run_search
from tests.benchmarks.server_bench_support import (
    CLIENTS,
    PASSWORD,
    LoadResult,
    cli,
    http_load,
    rate,
    served,
    sign_in,
)
from tests.server.conftest import free_port

pytestmark = pytest.mark.benchmark
Worker = Callable[[int, Callable[[], bool]], int]
SECONDS = 8.0
TARGET = 1000.0
HR = "http://loinc.org|8867-4"


@pytest.fixture(scope="module")
def bench_db(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    url = create_database()
    engine = make_engine(url)
    migrate(engine)
    with make_sessionmaker(engine)() as session:
        clinic = seed_demo(
            system_repository(session, "bench"), seed=3, patients=30, today=date(2026, 3, 2)
        )
        session.commit()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")  # as `ehr-server seed-demo` does after loading
        observations = [
            r[0]
            for r in conn.exec_driver_sql(
                "SELECT id FROM resources WHERE resource_type = 'Observation' ORDER BY id"
            )
        ]
    engine.dispose()
    data_dir = tmp_path_factory.mktemp("bench-data")
    secret_file = data_dir / "totp"
    cli("create-user", "--username", "bench", "--role", "physician", "--location",
        *clinic.location_ids, "--password-stdin", "--totp-secret-out", str(secret_file),
        database_url=url, data_dir=data_dir, stdin=PASSWORD + "\n")  # fmt: skip
    with served(url, data_dir, free_port()) as base:
        token = sign_in(base, "bench", secret_file.read_text().strip())
        yield {"url": url, "base": base, "token": token, "observations": observations,
               "patients": clinic.patient_ids}  # fmt: skip


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _raw_worker(url: str, run: Callable[[psycopg.Connection[Any], int], None]) -> Worker:
    def work(i: int, keep_going: Callable[[], bool]) -> int:
        done = 0
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            while keep_going():
                run(conn, i * 7919 + done)
                done += 1
        return done

    return work


_RAW_AUDIT = (
    "INSERT INTO audit_events (id, recorded, username, roles, action, outcome, resource_type,"
    " resource_id, patient_ids, detail) VALUES (gen_random_uuid()::text, now(), 'raw',"
    " '{physician}', 'read', 'success', 'Observation', %s, '{}', '{}')"
)


def _report(name: str, api: LoadResult, raw: float) -> None:
    bound = 2000 / api.server_cpu_ms  # what 2 cores could serve at this CPU cost
    print(f"\n{name}: API {api.describe()}; at most {bound:,.0f} req/s on 2 idle cores;"
          f" raw psycopg {raw:,.0f} q/s from {CLIENTS} threads (ratio {api.rate / raw:.2f});"
          f" target {TARGET:,.0f} req/s")  # fmt: skip


def test_read_by_id_throughput(bench_db: dict[str, Any]) -> None:
    ids = bench_db["observations"]
    paths = [f"/fhir/R4/Observation/{i}" for i in ids]
    api = http_load(bench_db["base"], bench_db["token"], paths, SECONDS)

    def read(conn: psycopg.Connection[Any], n: int) -> None:
        conn.execute(
            "SELECT version_id, last_updated, deleted, patient_id, resource::text FROM resources"
            " WHERE resource_type = %s AND id = %s", ("Observation", ids[n % len(ids)])
        ).fetchone()  # fmt: skip

    raw = rate(_raw_worker(bench_db["url"], read), SECONDS)
    _report("Observation read by id", api, raw)

    def audited_read(conn: psycopg.Connection[Any], n: int) -> None:
        with conn.transaction():  # what a served read must at least do: read, audit, commit
            read(conn, n)
            conn.execute(_RAW_AUDIT, (ids[n % len(ids)],))

    audited = rate(_raw_worker(bench_db["url"], audited_read), SECONDS)
    print(f"raw psycopg read + audit INSERT + durable COMMIT: {audited:,.0f}/s from {CLIENTS}"
          f" threads (API ratio {api.rate / audited:.2f})")  # fmt: skip


def test_chart_search_throughput(bench_db: dict[str, Any]) -> None:
    patients = bench_db["patients"]
    paths = [f"/fhir/R4/Observation?patient={p}&code={HR}&_sort=-date" for p in patients]
    random.Random(1).shuffle(paths)
    api = http_load(bench_db["base"], bench_db["token"], paths, SECONDS)

    def search(conn: psycopg.Connection[Any], n: int) -> None:
        items = [("patient", patients[n % len(patients)]), ("code", HR), ("_sort", "-date")]
        query = parse_search("Observation", items, default_count=50, max_count=1000, strict=True)
        run_search(conn, query, visible=None)

    raw = rate(_raw_worker(bench_db["url"], search), SECONDS)
    _report("Observation?patient&code&_sort=-date", api, raw)
