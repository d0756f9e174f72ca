"""The role x endpoint x location matrix, generated from the permission table, on the live API.

Two Synthea patients (bulk NDJSON test data): one cared for at the users'
location, one at another location. For every role, every resource type of
`PERMISSION_TABLE` and every FHIR interaction, the call must succeed exactly
when the table allows it and the patient is at the user's location; every
other call is a 403 OperationOutcome and leaves a `denied` audit row. Searches
are filtered, not refused: the other location's resource never comes back.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from identity_support import (
    audit_rows,
    bearer,
    login,
    make_user,
    system_repository,
)
from sqlalchemy.orm import Session

from shared_models.errors import ValidationFailed
from shared_models.fhir_validation import validate_resource
from sync_server.services.compartment import patient_of
from sync_server.services.fhir_repository import ResourceWrite
from sync_server.services.permissions import PERMISSION_TABLE, ROLES, role_allows
from sync_server.services.search_params import patient_param

BULK = "fhir-synthea/bulk-ndjson-10-patients"
EXAMPLES = "fhir-examples/r4-examples"
ACTIONS = ("read", "search", "create", "update", "delete")
#: The audit trail is not a FHIR-store type; its own tests cover it.
MATRIX_TYPES = sorted(t for t in PERMISSION_TABLE if t != "AuditEvent")


def _ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _with_patient(resource_type: str, resource: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """Point the resource's patient-compartment reference at `patient_id`."""
    param = patient_param(resource_type)
    if param is None:
        return resource
    reference = {"reference": f"Patient/{patient_id}"}
    path = param.paths[0]
    if path == "participant.actor":
        resource["participant"] = [{"actor": reference, "status": "accepted"}]
    elif path == "target":
        resource["target"] = [reference]
    else:
        resource[path] = reference
    return resource


def _template(shared_data: Path, resource_type: str) -> dict[str, Any]:
    """The first official R4 example of the type that is valid once re-pointed (a draft)."""
    for path in sorted((shared_data / EXAMPLES).glob(f"{resource_type}-*.json")):
        resource = json.loads(path.read_text())
        if resource.get("resourceType") != resource_type:
            continue
        for key in ("id", "meta", "text", "location"):
            resource.pop(key, None)
        if resource_type == "DocumentReference":
            resource["docStatus"] = "preliminary"
        if resource_type == "Composition":
            resource["status"] = "preliminary"
        candidate = _with_patient(resource_type, resource, "p")
        try:
            validate_resource(candidate)
        except ValidationFailed:
            continue
        if patient_param(resource_type) is None or patient_of(resource_type, "x", candidate) == "p":
            return candidate
    raise AssertionError(f"no usable example for {resource_type}")


class World:
    """Patients, locations, users and seeded resources of the matrix."""

    def __init__(self, server: Any, shared_data: Path) -> None:
        self.server = server
        patients = _ndjson(shared_data / BULK / "Patient.000.ndjson")[:2]
        locations = _ndjson(shared_data / BULK / "Location.000.ndjson")[:2]
        encounters = _ndjson(shared_data / BULK / "Encounter.000.ndjson")
        self.patient = {"mine": patients[0]["id"], "other": patients[1]["id"]}
        self.location = {"mine": locations[0]["id"], "other": locations[1]["id"]}
        self.shared_data = shared_data
        self.templates: dict[str, dict[str, Any]] = {}
        links = []
        for where in ("mine", "other"):
            encounter = next(
                e for e in encounters
                if e["subject"]["reference"].endswith(self.patient[where])
            )  # fmt: skip
            encounter = copy.deepcopy(encounter)
            encounter["location"] = [
                {"location": {"reference": f"Location/{self.location[where]}"}}
            ]
            links.append(encounter)
        with Session(server.engine) as session:
            repo = system_repository(session)
            for resource in [*locations, *patients, *links]:
                repo.write_version(resource["resourceType"], resource["id"], resource)
            session.commit()

    def new_resource(self, resource_type: str, where: str) -> dict[str, Any]:
        if resource_type == "Patient":
            return {"resourceType": "Patient", "name": [{"family": "Matrix", "given": ["New"]}]}
        if resource_type not in self.templates:
            self.templates[resource_type] = _template(self.shared_data, resource_type)
        resource = copy.deepcopy(self.templates[resource_type])
        return _with_patient(resource_type, resource, self.patient.get(where, "none"))

    def seed_all(self, cases: list[tuple[str, str]]) -> list[str]:
        """Store one resource per (type, place) in one transaction; returns their ids."""
        ids, writes = [], []
        for resource_type, where in cases:
            if resource_type == "Patient":
                ids.append(self.patient[where])
                continue
            ids.append(str(uuid.uuid4()))
            writes.append(
                ResourceWrite(resource_type, ids[-1], self.new_resource(resource_type, where), None)
            )
        with Session(self.server.engine) as session:
            system_repository(session).write_many(writes)
            session.commit()
        return ids


@pytest.fixture(scope="module")
def world(server: Any, shared_data: Path) -> World:
    return World(server, shared_data)


def _places(resource_type: str) -> tuple[str, ...]:
    """Patient-compartment types are tried at both locations; others once."""
    in_compartment = resource_type == "Patient" or patient_param(resource_type) is not None
    return ("mine", "other") if in_compartment else ("none",)


def _call(
    client: httpx.Client,
    world: World,
    action: str,
    resource_type: str,
    where: str,
    resource_id: str,
) -> httpx.Response:
    if action == "read":
        return client.get(f"/{resource_type}/{resource_id}")
    if action == "search":
        return client.get(f"/{resource_type}", params={"_id": resource_id})
    if action == "create":
        return client.post(f"/{resource_type}", json=world.new_resource(resource_type, where))
    if action == "update":
        body = world.new_resource(resource_type, where) | {"id": resource_id}
        if resource_type == "Patient":
            body = {"resourceType": "Patient", "id": resource_id, "active": True}
        return client.put(f"/{resource_type}/{resource_id}", json=body)
    return client.delete(f"/{resource_type}/{resource_id}")


def _expected(role: str, action: str, resource_type: str, where: str) -> bool:
    if not role_allows(role, action, resource_type):
        return False
    if where != "other":
        return True
    # A new Patient belongs to no location yet; everything else of the other patient is out.
    return resource_type == "Patient" and action == "create"


def _representative_types() -> list[str]:
    """One type per distinct table row (same letters, same compartment): the fast matrix."""
    chosen: dict[tuple[Any, ...], str] = {}
    for resource_type in MATRIX_TYPES:
        key = (PERMISSION_TABLE[resource_type], _places(resource_type))
        chosen.setdefault(key, resource_type)
    return sorted(chosen.values())


def _check_matrix(server: Any, world: World, role: str, types: list[str]) -> None:
    user = make_user(server, f"matrix.{role}.{len(types)}", [role], [world.location["mine"]])
    with httpx.Client(base_url=server.url) as plain:
        token = login(plain, user)["access_token"]
    cases = [(t, w, a) for t in types for w in _places(t) for a in ACTIONS]
    ids = world.seed_all([(t, w) for t, w, _ in cases])
    mistakes: list[str] = []
    denials = 0
    with httpx.Client(base_url=server.fhir_url, headers=bearer(token), timeout=30) as client:
        for (resource_type, where, action), resource_id in zip(cases, ids, strict=True):
            response = _call(client, world, action, resource_type, where, resource_id)
            case = f"{role} {action} {resource_type} at {where}: {response.status_code}"
            if action == "search" and role_allows(role, "search", resource_type):
                # Searches are filtered by location, never refused.
                found = [e["resource"]["id"] for e in response.json().get("entry", [])]
                if response.status_code != 200 or (resource_id in found) != (where != "other"):
                    mistakes.append(f"{case} found={len(found)}")
            elif _expected(role, action, resource_type, where):
                if response.status_code >= 300:
                    mistakes.append(f"{case} {response.text[:200]}")
            else:
                denials += 1
                body = response.json() if response.content else {}
                if response.status_code != 403 or body.get("resourceType") != "OperationOutcome":
                    mistakes.append(case)
    assert mistakes == []
    assert len(audit_rows(server, username=user.username, outcome="denied")) == denials


@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_on_every_distinct_table_row(server: Any, world: World, role: str) -> None:
    _check_matrix(server, world, role, _representative_types())


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_on_every_type(server: Any, world: World, role: str) -> None:
    _check_matrix(server, world, role, MATRIX_TYPES)
