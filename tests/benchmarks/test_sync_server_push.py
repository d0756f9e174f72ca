"""Push throughput: 4 workstations pushing concurrently to a real `ehr-server serve` (2 workers).

Figure: changes/s accepted (validated, merged-checked, versioned, indexed,
audited, committed) over HTTP on loopback, beside the raw rate of COPYing the
same JSON into a PostgreSQL table on the same cluster. Target (DESIGN.md):
5,000 changes/s on 2 cores. Printed, never asserted.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pyotp
import pytest
from sqlalchemy.orm import Session

from sync_server.config import Settings
from sync_server.db.engine import make_engine, migrate
from sync_server.services import users
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import FhirRepository
from sync_server.services.identity import build_runtime
from sync_server.services.system_access import SystemAudit, SystemGuard

PUSHERS = 4
BATCHES = 2
BATCH = 500
TARGET = 5000
SECRET = "benchmark-only-server-secret-0123456789"
PASSWORD = "Bench-mark-password-42"
_SAMPLE = ("Condition", "Procedure", "MedicationRequest", "Immunization")

pytestmark = pytest.mark.benchmark


@dataclass
class Served:
    base: str
    database_url: str
    patients: list[str]
    totp_secrets: list[str]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sample(shared_data: Path) -> list[dict[str, Any]]:
    folder = shared_data / "fhir-synthea" / "bulk-ndjson-10-patients"
    out = []
    for resource_type in _SAMPLE:
        lines = (folder / f"{resource_type}.000.ndjson").read_text().splitlines()
        out += [orjson.loads(line) for line in lines if line.strip()]
    return out


def changes_for(template: list[dict[str, Any]], patient: str, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        resource = copy.deepcopy(template[i % len(template)])
        resource["id"] = str(uuid.uuid4())
        key = "patient" if resource["resourceType"] == "Immunization" else "subject"
        resource[key] = {"reference": f"Patient/{patient}"}
        resource.pop("encounter", None)
        out.append({"change_id": str(uuid.uuid4()), "resourceType": resource["resourceType"],
                    "id": resource["id"], "op": "upsert", "base_version": None,
                    "resource": resource})  # fmt: skip
    return out


@pytest.fixture(scope="module")
def served(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A migrated server running in 2 worker processes, with a patient per workstation."""
    url = create_database()
    data_dir = tmp_path_factory.mktemp("bench-data")
    env = {**os.environ, "DATABASE_URL": url, "EHR_DATA_DIR": str(data_dir),
           "EHR_SERVER_SECRET": SECRET}  # fmt: skip
    os.environ["EHR_SERVER_SECRET"] = SECRET
    engine = make_engine(url)
    migrate(engine)
    runtime = build_runtime(Settings(database_url=url, data_dir=data_dir))
    patients = [str(uuid.uuid4()) for _ in range(PUSHERS)]
    with Session(engine) as session:
        repo = FhirRepository(
            session, RequestContext.for_system("bench"), SystemGuard(), SystemAudit()
        )
        repo.update("Location", "loc-main", {"resourceType": "Location", "name": "Main"})
        for patient in patients:
            repo.update("Patient", patient, {"resourceType": "Patient", "gender": "female"})
            repo.create({"resourceType": "Encounter", "status": "finished",
                         "class": {"code": "AMB"}, "subject": {"reference": f"Patient/{patient}"},
                         "location": [{"location": {"reference": "Location/loc-main"}}]},
            )  # fmt: skip
        secrets = []
        for n in range(PUSHERS):
            _, enrolment = users.create_user(
                session, runtime.keys, runtime.security, username=f"bench.{n}",
                password=PASSWORD, roles=["physician"], location_ids=["loc-main"],
            )  # fmt: skip
            secrets.append(enrolment.secret)
        session.commit()
    engine.dispose()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "sync_server.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield Served(base, url, patients, secrets)
    finally:
        server.terminate()
        server.wait(timeout=30)


def token(base: str, n: int, secret: str) -> str:
    answer = httpx.post(
        f"{base}/auth/login",
        json={"username": f"bench.{n}", "password": PASSWORD,
              "otp": pyotp.TOTP(secret).now(), "workstation_id": f"bench-ws-{n}"},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def raw_copy_rate(url: str, resources: list[bytes]) -> float:
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as conn:
        conn.execute("CREATE TEMP TABLE raw_copy (id text, resource jsonb)")
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy("COPY raw_copy (id, resource) FROM STDIN") as copy_:
            for i, body in enumerate(resources):
                copy_.write_row((str(i), body.decode()))
        conn.commit()
        return len(resources) / (time.perf_counter() - started)


def test_push_throughput_with_four_workstations(served: Served, shared_data: Path) -> None:
    base, url, patients, secrets = (
        served.base,
        served.database_url,
        served.patients,
        served.totp_secrets,
    )
    template = sample(shared_data)
    work = [
        [changes_for(template, patients[n], BATCH) for _ in range(BATCHES)] for n in range(PUSHERS)
    ]
    bodies = [
        orjson.dumps({"client_id": f"bench-ws-{n}", "changes": batch})
        for n in range(PUSHERS)
        for batch in work[n]
    ]
    tokens = [token(base, n, secrets[n]) for n in range(PUSHERS)]
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def pusher(n: int) -> None:
        headers = {"Authorization": f"Bearer {tokens[n]}", "Content-Type": "application/json"}
        with httpx.Client(base_url=base, timeout=300) as client:
            for body in bodies[n * BATCHES : (n + 1) * BATCHES]:
                response = client.post("/sync/push", content=body, headers=headers)
                assert response.status_code == 200, response.text[:500]
                with lock:
                    for result in response.json()["results"]:
                        statuses[result["status"]] = statuses.get(result["status"], 0) + 1

    threads = [threading.Thread(target=pusher, args=(n,)) for n in range(PUSHERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    total = PUSHERS * BATCHES * BATCH
    resources = [orjson.dumps(c["resource"]) for w in work for batch in w for c in batch]
    raw = raw_copy_rate(url, resources)
    print(
        f"\nsync push: {total:,} changes from {PUSHERS} workstations in {elapsed:.1f} s"
        f" = {total / elapsed:,.0f} changes/s (target {TARGET:,}/s on 2 cores);"
        f" raw COPY of the same JSON into PostgreSQL: {raw:,.0f} rows/s; statuses {statuses}"
    )
    assert statuses == {"applied": total}
