"""Helpers of the end-to-end sync tests: seed the server, drive workstations, compare states.

Patients are the real Synthea patients of `../shared/data` (given fresh ids per
use, so a test can seed the same people again); an `Encounter` at the test's
Location makes them cared for there (DESIGN.md), and `Goal`s give every chart a
resource a physician may edit and delete.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import keyring
import orjson
from desktop_store_helpers import FAST_KDF
from identity_support import PASSWORD, TestUser, system_repository
from keyrings.alt.file import PlaintextKeyring
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from desktop.services.workstation import Workstation
from desktop.store import outbox, resources
from sync_server.config import Settings
from sync_server.services import users
from sync_server.services.identity import build_runtime

LOCATION = "loc-satellite"
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def synthea_patients(shared_data: Path) -> list[dict[str, Any]]:
    """The Synthea Patient resources of `bundles-2019`, as published."""
    folder = shared_data / "fhir-synthea" / "bundles-2019"
    found = []
    for path in sorted(folder.glob("*.json")):
        if "Information" in path.name:
            continue
        bundle = json.loads(path.read_text())
        found += [
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        ]
    return found


def location(location_id: str = LOCATION) -> dict[str, Any]:
    return {"resourceType": "Location", "id": location_id, "name": f"Clinic {location_id}",
            "status": "active"}  # fmt: skip


def encounter(patient_id: str, location_id: str = LOCATION) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": str(uuid.uuid4()),
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "location": [{"location": {"reference": f"Location/{location_id}"}}],
    }


def goal(patient_id: str, text_: str) -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "id": str(uuid.uuid4()),
        "lifecycleStatus": "active",
        "description": {"text": text_},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


@dataclass
class SeededCharts:
    patient_ids: list[str]
    goal_ids: list[str]


def seed_charts(
    engine: Engine,
    templates: list[dict[str, Any]],
    *,
    goals_per_patient: int = 1,
    location_id: str = LOCATION,
) -> SeededCharts:
    """Store copies of the Synthea patients (fresh ids), each with an Encounter here and Goals."""
    writes: list[dict[str, Any]] = [location(location_id)]
    patient_ids, goal_ids = [], []
    for template in templates:
        patient = copy.deepcopy(template)
        patient["id"] = str(uuid.uuid4())
        patient_ids.append(patient["id"])
        writes += [patient, encounter(patient["id"], location_id)]
        for n in range(goals_per_patient):
            item = goal(patient["id"], f"Goal {n}")
            goal_ids.append(item["id"])
            writes.append(item)
    with Session(engine) as session:
        repo = system_repository(session)
        for resource in writes:
            repo.write_version(resource["resourceType"], resource["id"], resource)
        session.commit()
    return SeededCharts(patient_ids, goal_ids)


def signed_in(profile: Path, url: str, user: TestUser) -> Workstation:
    """A workstation profile signed in online (creates the profile on first use)."""
    ws = Workstation.open(profile, url, kdf=FAST_KDF)
    try:
        ws.sign_in_online(user.username, user.password, user.next_code())
    except BaseException:
        ws.close()
        raise
    return ws


def synced_workstation(folder: Path, url: str, user: TestUser) -> Iterator[Workstation]:
    """Body of a module fixture: a signed-in workstation after its first sync, closed after."""
    ws = signed_in(folder, url, user)
    ws.sync()
    yield ws
    ws.close()


def delete_locally(ws: Workstation, resource_type: str, resource_id: str) -> str:
    """A local delete as the store queues it: tombstone + outbox row, one transaction."""
    db = ws._db()
    with db.transaction() as conn:
        stored = resources.get(conn, resource_type, resource_id)
        assert stored is not None
        resources.mark_deleted(conn, resource_type, resource_id, dirty=True)
        return outbox.enqueue(
            conn, resource_type=resource_type, resource_id=resource_id, op="delete",
            base_version=stored.version_id, patient_id=stored.patient_id, raw_json=None,
        )  # fmt: skip


def local_state(ws: Workstation) -> dict[tuple[str, str], tuple[int | None, dict[str, Any]]]:
    """Every synced resource of the workstation: (type, id) -> (version, JSON)."""
    rows = (
        ws._db()
        .connection()
        .execute("SELECT resource_type, id, version_id, json FROM resources WHERE deleted = 0")
    )
    return {(t, i): (v, orjson.loads(j)) for t, i, v, j in rows}


def server_state(
    engine: Engine, patient_ids: list[str] | None = None
) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
    """Current server resources (of these patients plus the shared ones, or all)."""
    sql = "SELECT resource_type, id, version_id, resource::text FROM resources WHERE NOT deleted"
    params: dict[str, Any] = {}
    if patient_ids is not None:
        sql += " AND (patient_id IS NULL OR patient_id = ANY(:p))"
        params["p"] = patient_ids
    with engine.connect() as conn:
        rows = conn.execute(text(sql), params).all()
    return {(t, i): (v, orjson.loads(j)) for t, i, v, j in rows}


def version_counts(engine: Engine, resource_type: str) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, count(*) FROM resource_versions WHERE resource_type = :t GROUP BY id"),
            {"t": resource_type},
        ).all()
    return {i: n for i, n in rows}


def strip_meta(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


# -- a real `ehr-server serve` process -------------------------------------------------


@dataclass
class ServerProcess:
    url: str
    port: int
    env: dict[str, str]
    engine: Engine
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "sync_server.cli", "serve", "--host", "127.0.0.1",
                   "--port", str(self.port)]  # fmt: skip
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode()[-2000:])  # type: ignore[union-attr]
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    @classmethod
    def on(cls, database_url: str, engine: Engine, data_dir: Path) -> Self:
        """A server for a migrated database, on a free port (not started yet)."""
        port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url, "EHR_DATA_DIR": str(data_dir)}
        return cls(f"http://127.0.0.1:{port}", port, env, engine)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def create_user_on(server: ServerProcess, username: str) -> TestUser:
    """A physician at LOCATION, created the way `ehr-server create-user` does."""
    data_dir = Path(server.env["EHR_DATA_DIR"])
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=None))
    with Session(server.engine) as session:
        _, enrolment = users.create_user(
            session, runtime.keys, runtime.security, username=username, password=PASSWORD,
            roles=["physician"], location_ids=[LOCATION],
        )  # fmt: skip
        session.commit()
    return TestUser(username, PASSWORD, enrolment.secret)


@contextmanager
def file_keychain(folder: Path) -> Iterator[Path]:
    """`keyring` writes to a file under `folder` (a child process finds it with
    `desktop_store_helpers.keychain_env`), never to the real keychain."""
    path = folder / "python_keyring" / "keyring_pass.cfg"
    path.parent.mkdir(parents=True)
    backend = PlaintextKeyring()
    backend.file_path = str(path)
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield path
    finally:
        keyring.set_keyring(previous)


# -- a big clinic, loaded in bulk ------------------------------------------------------

_UUID_HEAD = re.compile(rb"[0-9a-f]{8}(?=-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
#: Billing resources are left out: a workstation's clinical cache does not need them.
_NOT_CLINICAL = frozenset({"Claim", "ExplanationOfBenefit"})


@dataclass(frozen=True)
class BulkRow:
    resource_type: str
    id: str
    patient_id: str | None
    json: bytes


def synthea_clinic(shared_data: Path, total: int) -> list[BulkRow]:
    """`total` resources: the Synthea charts copied with fresh ids until there are enough.

    Copy n rewrites the first 8 hex digits of every UUID in the JSON text to n,
    so ids and references stay consistent inside each copy.
    """
    from desktop_store_helpers import synthea_resources

    charts, _ = synthea_resources(shared_data, 10)
    unique = {(r["resourceType"], r["id"]): r for r in charts}  # shared practitioners once
    template = [r for r in unique.values() if r["resourceType"] not in _NOT_CLINICAL]
    texts = [orjson.dumps(r) for r in template]
    rows: list[BulkRow] = []
    copy_no = 0
    while len(rows) < total:
        head = f"{copy_no:08x}".encode()
        for raw in texts:
            data = _UUID_HEAD.sub(head, raw)
            resource = orjson.loads(data)
            rows.append(
                BulkRow(resource["resourceType"], resource["id"], _patient_of(resource), data)
            )
        copy_no += 1
    return rows[:total]


def _patient_of(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    for key in ("subject", "patient"):
        ref = (resource.get(key) or {}).get("reference", "")
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref.removeprefix("Patient/")
    return None


def bulk_load(engine: Engine, rows: list[BulkRow], location_id: str = LOCATION) -> None:
    """COPY the rows into the server's tables as version 1, every patient cared for here.

    The same rows the repository would write (current version, history row, care
    site), without 100,000 validations: the benchmark measures the pull, not the load.
    """
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
        columns = "resource_type, id, version_id, last_updated, patient_id, resource"
        for table in ("resources", "resource_versions"):
            with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row((row.resource_type, row.id, 1, "2024-01-01T00:00:00Z",
                                    row.patient_id, row.json.decode()))  # fmt: skip
        patients = {r.id for r in rows if r.resource_type == "Patient"}
        with cur.copy(
            "COPY patient_locations (source_type, source_id, location_id, patient_id) FROM STDIN"
        ) as copy:
            for patient in patients:
                copy.write_row(("Encounter", f"bulk-{patient}", location_id, patient))
        raw.commit()
    finally:
        raw.close()
