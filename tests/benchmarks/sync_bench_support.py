"""A real `ehr-server serve` (2 worker processes) for the sync benchmarks.

A migrated database on the test cluster, a main-clinic Location, one patient
per workstation (with an Encounter there, so it is in scope) and a physician
per workstation who signs in over HTTP.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import psutil
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
from sync_server.services.login_policy import SecuritySettings
from sync_server.services.system_access import SystemAudit, SystemGuard

WORKSTATIONS = 4
SECRET = "benchmark-only-server-secret-0123456789"
PASSWORD = "Bench-mark-password-42"


@dataclass
class Served:
    base: str
    database_url: str
    patients: list[str]
    totp_secrets: list[str]
    #: The `ehr-server serve` process (its workers are its children).
    pid: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children so far."""
    total = 0.0
    parent = psutil.Process(pid)
    for process in [parent, *parent.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def postgres_pid(database_url: str) -> int:
    """The postmaster of the cluster behind `database_url` (its children do the work)."""
    libpq = database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as conn:  # ask while the backend lives: it exits on close
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        return int(psutil.Process(row[0]).ppid())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A migrated server running in 2 worker processes, with a patient per workstation."""
    url = create_database()
    data_dir = tmp_path_factory.mktemp("bench-data")
    env = {**os.environ, "DATABASE_URL": url, "EHR_DATA_DIR": str(data_dir),
           "EHR_SERVER_SECRET": SECRET}  # fmt: skip
    engine = make_engine(url)
    migrate(engine)
    # The same secret as the server process: passed explicitly, because the
    # process-wide security settings may have been read before this module ran.
    runtime = build_runtime(
        Settings(database_url=url, data_dir=data_dir), SecuritySettings(server_secret=SECRET)
    )
    patients = [str(uuid.uuid4()) for _ in range(WORKSTATIONS)]
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
        for n in range(WORKSTATIONS):
            _, enrolment = users.create_user(
                session, runtime.keys, runtime.security, username=f"bench.{n}",
                password=PASSWORD, roles=["physician"], location_ids=["loc-main"],
            )  # fmt: skip
            secrets.append(enrolment.secret)
        session.commit()
    engine.dispose()
    port = free_port()
    log = (data_dir / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "sync_server.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                tail = (data_dir / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"server did not start: {tail}")
            time.sleep(0.2)
        yield Served(base, url, patients, secrets, server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def token(base: str, n: int, secret: str) -> str:
    answer = httpx.post(
        f"{base}/auth/login",
        json={"username": f"bench.{n}", "password": PASSWORD,
              "otp": pyotp.TOTP(secret).now(), "workstation_id": f"bench-ws-{n}"},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])
