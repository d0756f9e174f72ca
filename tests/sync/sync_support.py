"""Helpers of the end-to-end sync tests: seed the server, drive workstations, compare states.

Patients are the real Synthea patients of `../shared/data` (given fresh ids per
use, so a test can seed the same people again); an `Encounter` at the test's
Location makes them cared for there (DESIGN.md), and `Goal`s give every chart a
resource a physician may edit and delete.
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from desktop_store_helpers import FAST_KDF
from identity_support import TestUser, system_repository
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from desktop.services.workstation import Workstation
from desktop.store import outbox, resources

LOCATION = "loc-satellite"


def synthea_patients(shared_data: Path) -> list[dict[str, Any]]:
    """The Synthea Patient resources of `bundles-2019`, as published."""
    folder = shared_data / "fhir-synthea" / "bundles-2019"
    found = []
    for path in sorted(folder.glob("*.json")):
        if "Information" in path.name:
            continue
        bundle = json.loads(path.read_text())
        found += [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
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
    rows = ws._db().connection().execute(
        "SELECT resource_type, id, version_id, json FROM resources WHERE deleted = 0"
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
