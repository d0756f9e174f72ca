"""Horizontal scale: two `ehr-server serve` processes over one PostgreSQL.

Four workstations push and pull through both servers at once while one server,
chosen at random, is killed (SIGKILL) and restarted, twice. A request cut off
by the kill is retried on the other server with the same `change_id`s, as the
desktop's outbox does. Afterwards:

- no lost update: every change has exactly one answer, each workstation's
  Condition ends at version 1 + its number of edits with its last content;
- no duplicated change: each Observation was applied once (one version),
  however often its push was retried, and no pull delivered the same
  (id, version) twice to a workstation;
- no skipped change: every workstation's pull feed holds every version any
  workstation wrote.

Bounded: 4 workstations x 12 rounds, 2 kills, a 240 s time limit.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from sync_server.db.engine import make_engine, migrate
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import FhirRepository
from sync_server.services.login_policy import SecuritySettings
from sync_server.services.server_keys import ServerKeys
from sync_server.services.system_access import SystemAudit, SystemGuard
from sync_server.services.users import create_user

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SECRET = "scale-test-server-secret-0123456789abcdef"
WORKSTATIONS = 4
ROUNDS = 12
KILLS = 2
DEADLINE_S = 240
PASSWORD = "Correct-Horse-Battery-9"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One `ehr-server serve` on a fixed port, restartable."""

    def __init__(self, port: int, env: dict[str, str], log: Path) -> None:
        self.port, self.env, self.log = port, env, log
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sync_server.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            time.sleep(0.2)
        raise AssertionError(f"server on {self.port} did not become healthy")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _seed(url: str) -> tuple[str, list[str], list[str]]:
    """A Location, 8 patients cared for there (via an Encounter), 4 users at it."""
    engine = make_engine(url)
    migrate(engine)
    location = str(uuid.uuid4())
    patients = [str(uuid.uuid4()) for _ in range(8)]
    with Session(engine) as session:
        repo = FhirRepository(
            session, RequestContext.for_system("scale-test"), SystemGuard(), SystemAudit()
        )
        repo.update("Location", location, {"resourceType": "Location", "name": "Scale ward"})
        for n, patient in enumerate(patients):
            repo.update("Patient", patient, {"resourceType": "Patient", "gender": "female",
                                             "name": [{"family": f"Scale{n}"}]})  # fmt: skip
            repo.update("Encounter", str(uuid.uuid4()), {
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": "AMB"},
                "subject": {"reference": f"Patient/{patient}"},
                "location": [{"location": {"reference": f"Location/{location}"}}],
            })  # fmt: skip
        secrets_by_user = []
        for n in range(WORKSTATIONS):
            _, enrolment = create_user(
                session, ServerKeys(SECRET.encode()), SecuritySettings(server_secret=SECRET),
                username=f"scale{n}", password=PASSWORD, roles=["physician"],
                location_ids=[location],
            )  # fmt: skip
            secrets_by_user.append(enrolment.secret)
        session.commit()
    engine.dispose()
    return location, patients, secrets_by_user


@dataclass
class Workstation:
    number: int
    servers: list[ServerProcess]
    patients: list[str]
    totp_secret: str
    rng: random.Random
    token: str = ""
    cursor: str = "0"
    condition_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    condition_version: int = 0
    last_condition_note: str = ""
    observation_ids: list[str] = field(default_factory=list)
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    pulled: list[tuple[str, str, int]] = field(default_factory=list)
    retries: int = 0

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send to a random server; on a cut connection or 5xx, retry on the other one."""
        order = self.rng.sample(self.servers, 2)
        last = ""
        for attempt in range(40):
            server = order[attempt % 2]
            try:
                headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
                response = httpx.request(method, server.url + path, timeout=30,
                                         headers=headers, **kwargs)  # fmt: skip
            except (
                httpx.ConnectError,
                httpx.ReadError,
                httpx.RemoteProtocolError,
                httpx.TimeoutException,
            ) as exc:
                last = repr(exc)
                self.retries += 1
                time.sleep(0.1)
                continue
            if response.status_code >= 500:
                last = f"{response.status_code} {response.text[:300]}"
                self.retries += 1
                time.sleep(0.1)
                continue
            return response
        raise AssertionError(f"{method} {path}: no server answered; last: {last}")

    def sign_in(self) -> None:
        response = self._request("POST", "/auth/login", json={
            "username": f"scale{self.number}", "password": PASSWORD,
            "otp": pyotp.TOTP(self.totp_secret).now(), "workstation_id": f"ws-{self.number}",
        })  # fmt: skip
        assert response.status_code == 200, response.text
        self.token = response.json()["access_token"]

    def push_round(self, round_number: int) -> None:
        changes = []
        for _ in range(3):
            obs_id = str(uuid.uuid4())
            self.observation_ids.append(obs_id)
            changes.append({
                "change_id": str(uuid.uuid4()), "resourceType": "Observation", "id": obs_id,
                "op": "upsert", "base_version": None,
                "resource": {
                    "resourceType": "Observation", "id": obs_id, "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": f"Patient/{self.rng.choice(self.patients)}"},
                    "valueQuantity": {"value": 60 + round_number, "unit": "/min",
                                      "system": "http://unitsofmeasure.org", "code": "/min"},
                },
            })  # fmt: skip
        note = f"ws{self.number} edit {round_number}"
        changes.append({
            "change_id": str(uuid.uuid4()), "resourceType": "Condition", "id": self.condition_id,
            "op": "upsert", "base_version": self.condition_version or None,
            "resource": {
                "resourceType": "Condition", "id": self.condition_id,
                "subject": {"reference": f"Patient/{self.patients[self.number]}"},
                "code": {"text": "Scale test problem"}, "note": [{"text": note}],
            },
        })  # fmt: skip
        body = {"client_id": f"ws-{self.number}", "changes": changes}
        response = self._request("POST", "/sync/push", json=body)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["change_id"] for r in results] == [c["change_id"] for c in changes]
        for change, result in zip(changes, results, strict=True):
            assert result["status"] == "applied", result
            self.answers[change["change_id"]] = result
        self.condition_version = results[-1]["versionId"]
        self.last_condition_note = note

    def pull_all(self) -> None:
        while True:
            response = self._request("GET", "/sync/pull",
                                     params={"cursor": self.cursor, "limit": 50})  # fmt: skip
            assert response.status_code == 200, response.text
            page = response.json()
            self.pulled += [(c["resourceType"], c["id"], c["versionId"]) for c in page["changes"]]
            self.cursor = page["cursor"]
            if not page["has_more"]:
                return


def test_two_servers_one_killed_lose_skip_and_duplicate_nothing(
    create_database, tmp_path: Path
) -> None:
    url = create_database()
    _, patients, totp_secrets = _seed(url)
    env = {**os.environ, "DATABASE_URL": url, "EHR_SERVER_SECRET": SECRET,
           "EHR_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    servers = [ServerProcess(_free_port(), env, tmp_path / f"server{i}.log") for i in range(2)]
    rng = random.Random(7)
    workstations = [
        Workstation(n, servers, patients, totp_secrets[n], random.Random(n))
        for n in range(WORKSTATIONS)
    ]
    errors: list[BaseException] = []
    started = time.monotonic()
    try:
        for server in servers:
            server.start()
        for ws in workstations:
            ws.sign_in()

        def run(ws: Workstation) -> None:
            try:
                for round_number in range(ROUNDS):
                    assert time.monotonic() - started < DEADLINE_S, "time limit"
                    ws.push_round(round_number)
                    ws.pull_all()
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(ws,)) for ws in workstations]
        for thread in threads:
            thread.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(1.0, 3.0))
            victim = rng.choice(servers)
            victim.kill()
            time.sleep(0.5)
            victim.start()
        for thread in threads:
            thread.join(timeout=DEADLINE_S)
        assert not errors, errors
        for ws in workstations:
            ws.pull_all()  # catch up with everything written after its last round
    finally:
        for server in servers:
            server.stop()
    elapsed = time.monotonic() - started
    retries = sum(ws.retries for ws in workstations)
    print(f"\n{WORKSTATIONS} workstations x {ROUNDS} rounds through 2 servers, {KILLS} kills: "
          f"{elapsed:.1f} s, {retries} requests retried on the other server")  # fmt: skip

    engine = make_engine(url)
    with engine.connect() as conn:
        versions = dict(conn.execute(text(
            "SELECT id, count(*) FROM resource_versions "
            "WHERE resource_type IN ('Observation', 'Condition') GROUP BY id"
        )).all())  # fmt: skip
        conditions = {row[0]: row[1] for row in conn.execute(text(
            "SELECT id, version_id FROM resources WHERE resource_type = 'Condition'"
        ))}  # fmt: skip
    engine.dispose()

    written: set[tuple[str, str, int]] = set()
    for ws in workstations:
        assert len(ws.answers) == ROUNDS * 4  # one answer per change, none lost
        for obs_id in ws.observation_ids:
            assert versions[obs_id] == 1, "an Observation was applied twice"
            written.add(("Observation", obs_id, 1))
        assert conditions[ws.condition_id] == ROUNDS == ws.condition_version
        assert versions[ws.condition_id] == ROUNDS
        written |= {("Condition", ws.condition_id, v) for v in range(1, ROUNDS + 1)}
    for ws in workstations:
        feed = [c for c in ws.pulled if c[0] in ("Observation", "Condition")]
        assert len(feed) == len(set(feed)), f"ws{ws.number} pulled a change twice"
        missing = written - set(feed)
        assert not missing, f"ws{ws.number} never received {len(missing)} changes"
