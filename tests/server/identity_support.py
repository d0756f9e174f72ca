"""Shared helpers of the identity, access and audit tests: a live server with real sign-in.

`secure_server` is the record engineer's live-server factory with the test-only
context override removed, so every call goes through bearer-token sign-in, the
real access guard and the real audit sink. Users are created through the user
service (as `ehr-server create-user` does) and sign in over HTTP.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from sync_server.services import users
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import FhirRepository
from sync_server.services.identity import IdentityRuntime
from sync_server.services.system_access import SystemAudit, SystemGuard

PASSWORD = "Tr0ub4dor&3-horse-staple"


@pytest.fixture(scope="module")
def secure_server(
    server_for_new_database: Callable[..., AbstractContextManager[Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """A live server on a fresh database where every request must sign in."""
    with server_for_new_database(data_dir=tmp_path_factory.mktemp("data")) as server:
        server.app.dependency_overrides.clear()
        yield server


@dataclass
class TestUser:
    username: str
    password: str
    totp_secret: str
    last_step: int = field(default=0)

    def next_code(self) -> str:
        """A valid TOTP code not used before (waits for the next step when needed)."""
        while True:
            now = int(time.time() // 30)
            for step in (now, now + 1):  # now-1 may expire before the server checks it
                if step > self.last_step:
                    self.last_step = step
                    return pyotp.TOTP(self.totp_secret).at(step * 30)
            time.sleep(1)


def identity_of(server: Any) -> IdentityRuntime:
    runtime: IdentityRuntime = server.app.state.identity
    return runtime


def make_user(
    server: Any,
    username: str,
    roles: list[str],
    locations: list[str] = (),  # type: ignore[assignment]
    *,
    practitioner: str | None = None,
) -> TestUser:
    rt = identity_of(server)
    with Session(server.engine) as session:
        _, enrolment = users.create_user(
            session, rt.keys, rt.security, username=username, password=PASSWORD,
            roles=roles, location_ids=list(locations), practitioner_id=practitioner,
        )  # fmt: skip
        session.commit()
    return TestUser(username, PASSWORD, enrolment.secret)


def login(client: httpx.Client, user: TestUser, workstation: str = "ws-test-1") -> dict[str, Any]:
    response = client.post(
        "/auth/login",
        json={
            "username": user.username,
            "password": user.password,
            "otp": user.next_code(),
            "workstation_id": workstation,
        },
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def system_repository(session: Session) -> FhirRepository:
    """The repository as the server's own tools use it (test data setup)."""
    return FhirRepository(session, RequestContext.for_system("tests"), SystemGuard(), SystemAudit())


def audit_rows(server: Any, **where: str) -> list[dict[str, Any]]:
    """Audit rows matching column = value filters, oldest first."""
    clauses = " AND ".join(f"{k} = :{k}" for k in where) or "TRUE"
    with server.engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT * FROM audit_events WHERE {clauses} ORDER BY pos"), where
        ).mappings()
        return [dict(r) for r in rows]


BULK_DATA = "fhir-synthea/bulk-ndjson-10-patients"


def read_ndjson(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@dataclass
class TwoSites:
    """Synthea patients cared for at two locations (by an Encounter naming each)."""

    mine: list[str]
    other: list[str]
    location_mine: str
    location_other: str
    names: list[str]


def seed_two_sites(server: Any, shared_data: Any, *, mine: int = 2, other: int = 1) -> TwoSites:
    """Store Synthea patients and Locations: `mine` at one site, the others at another."""

    folder = shared_data / BULK_DATA
    patients = read_ndjson(folder / "Patient.000.ndjson")[: mine + other]
    locations = read_ndjson(folder / "Location.000.ndjson")[:2]
    encounters = read_ndjson(folder / "Encounter.000.ndjson")
    writes: list[dict[str, Any]] = [*locations, *patients]
    for index, patient in enumerate(patients):
        location = locations[0] if index < mine else locations[1]
        encounter = copy.deepcopy(
            next(e for e in encounters if e["subject"]["reference"].endswith(patient["id"]))
        )
        encounter["location"] = [{"location": {"reference": f"Location/{location['id']}"}}]
        writes.append(encounter)
    with Session(server.engine) as session:
        repo = system_repository(session)
        for resource in writes:
            repo.write_version(resource["resourceType"], resource["id"], resource)
        session.commit()
    names = [n["family"] for p in patients for n in p.get("name", []) if "family" in n]
    return TwoSites(
        [p["id"] for p in patients[:mine]],
        [p["id"] for p in patients[mine:]],
        locations[0]["id"],
        locations[1]["id"],
        names,
    )
