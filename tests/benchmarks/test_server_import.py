"""Bulk import rate (resources/s) beside a raw COPY of the same JSON into a JSONB table.

The import is the production path (`ehr-server import`): every resource validated
with the R4B models, versioned, indexed, written in batches. The raw COPY only
moves bytes into one JSONB column. Target (issue 2): a third or more of the raw
rate. Printed, never asserted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from sync_server.db.engine import make_engine, migrate
from sync_server.services.context import RequestContext
from sync_server.services.importer import Importer
from sync_server.services.system_access import SystemAudit, SystemGuard

pytestmark = pytest.mark.benchmark
ORDER = ("Organization", "Location", "Practitioner", "PractitionerRole", "Patient", "Encounter")


def _files(shared_data: Path) -> list[Path]:
    folder = shared_data / "fhir-synthea" / "bulk-ndjson-10-patients"
    files = [p for p in folder.glob("*.ndjson") if p.name != "log.ndjson"]
    rank = {t: i for i, t in enumerate(ORDER)}
    return sorted(files, key=lambda p: (rank.get(p.name.split(".")[0], 99), p.name))


def test_import_rate_beside_raw_copy(create_database: Callable[[], str], shared_data: Path) -> None:
    files = _files(shared_data)
    lines = [line for p in files for line in p.read_bytes().splitlines() if line.strip()]

    raw_url = create_database().replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(raw_url) as conn:
        conn.execute("CREATE TABLE raw_import (resource jsonb NOT NULL)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY raw_import (resource) FROM STDIN") as copy:
            for line in lines:
                copy.write_row((line.decode(),))
        conn.commit()
        raw_rate = len(lines) / (time.perf_counter() - started)

    engine = make_engine(create_database())
    migrate(engine)
    workers = os.cpu_count() or 1
    importer = Importer(
        engine, RequestContext.for_system("bench"), SystemGuard(), SystemAudit(), workers=workers
    )
    summary = importer.import_files(files)
    engine.dispose()
    assert not summary.errors and summary.resources == len(lines)
    print(f"\nimport: {summary.rate:,.0f} resources/s with {workers} workers "
          f"({summary.resources:,} resources, validated, versioned, indexed); "
          f"raw COPY into JSONB: {raw_rate:,.0f}/s "
          f"(ratio {summary.rate / raw_rate:.2f}); target ratio 0.33")  # fmt: skip
