"""Initial pull, server side: resources/s a workstation downloads over HTTP on loopback.

Figure: a nurse's first sync of a clinic (patients, encounters, a year of vitals)
through `GET /sync/pull` pages of 1,000, beside the raw rate of reading the same
rows' JSON from PostgreSQL with one query. The desktop's target (DESIGN.md:
initial pull at a third of its raw SQLCipher insert rate) needs the server well
above that. Printed, never asserted on time.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from sync_bench_support import Served, served, token  # noqa: F401 - fixture

from sync_server.db.engine import make_engine
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import FhirRepository, ResourceWrite
from sync_server.services.system_access import SystemAudit, SystemGuard

PATIENTS = 100
VITALS_PER_PATIENT = 150

pytestmark = pytest.mark.benchmark


def clinic_writes() -> list[ResourceWrite]:
    writes = []
    for n in range(PATIENTS):
        patient = str(uuid.uuid4())
        writes.append(
            ResourceWrite("Patient", patient, {"resourceType": "Patient", "gender": "male"})
        )
        encounter = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                     "subject": {"reference": f"Patient/{patient}"},
                     "location": [{"location": {"reference": "Location/loc-main"}}]}  # fmt: skip
        writes.append(ResourceWrite("Encounter", str(uuid.uuid4()), encounter))
        for v in range(VITALS_PER_PATIENT):
            obs: dict[str, Any] = {
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{patient}"},
                "effectiveDateTime": f"2024-{1 + v % 12:02d}-{1 + v % 28:02d}T08:00:00Z",
                "valueQuantity": {"value": 60 + (n + v) % 40, "unit": "/min",
                                  "system": "http://unitsofmeasure.org", "code": "/min"},
            }  # fmt: skip
            writes.append(ResourceWrite("Observation", str(uuid.uuid4()), obs))
    return writes


def test_initial_pull_rate(served: Served) -> None:  # noqa: F811
    engine = make_engine(served.database_url)
    writes = clinic_writes()
    with Session(engine) as session:
        repo = FhirRepository(
            session, RequestContext.for_system("bench"), SystemGuard(), SystemAudit()
        )
        for start in range(0, len(writes), 1000):
            repo.write_many(writes[start : start + 1000])
        session.commit()
    headers = {"Authorization": f"Bearer {token(served.base, 0, served.totp_secrets[0])}"}
    changes: list[dict[str, Any]] = []
    size, cursor = 0, "0"
    with httpx.Client(base_url=served.base, timeout=300, headers=headers) as client:
        started = time.perf_counter()
        while True:
            response = client.get("/sync/pull", params={"cursor": cursor, "limit": 1000})
            assert response.status_code == 200, response.text[:500]
            size += len(response.content)
            page = orjson.loads(response.content)
            changes += page["changes"]
            cursor = page["cursor"]
            if not page["has_more"]:
                break
        elapsed = time.perf_counter() - started
    with engine.connect() as conn:
        started = time.perf_counter()
        rows = conn.execute(text("SELECT resource::text FROM resources")).fetchall()
        raw = len(rows) / (time.perf_counter() - started)
    engine.dispose()
    print(
        f"\nsync pull (initial): {len(changes):,} resources ({size / 1e6:.1f} MB) in"
        f" {elapsed:.2f} s = {len(changes) / elapsed:,.0f} resources/s over HTTP;"
        f" raw PostgreSQL read of the same JSON: {raw:,.0f} rows/s"
    )
    assert len(changes) >= len(writes)
