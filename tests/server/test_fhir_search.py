"""Search parameters of the supported types, on the demo clinic, against counts computed here.

The demo clinic is generated (deterministically) and written through the
repository into a database of its own; every expected count below comes from
the generated resources, not from the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from shared_models import fhir_constants as fc
from sync_server.cli import system_repository
from sync_server.db.engine import make_sessionmaker
from sync_server.services.demo_seed import build_demo_clinic, seed_demo
from tests.server.conftest import client_for

TODAY = date(2026, 3, 2)


@pytest.fixture(scope="module")
def demo(server_for_new_database) -> Iterator[tuple[httpx.Client, list[dict[str, Any]]]]:
    with server_for_new_database() as server:
        with make_sessionmaker(server.engine)() as session:
            seed_demo(system_repository(session, "tests"), seed=7, patients=12, today=TODAY)
            session.commit()
        _, resources = build_demo_clinic(7, 12, today=TODAY)
        with client_for(server) as client:
            yield client, resources


def _total(client: httpx.Client, query: str) -> int:
    response = client.get(f"{query}&_summary=count" if "?" in query else f"{query}?_summary=count")
    assert response.status_code == 200, response.text[:300]
    return int(response.json()["total"])


def _of(
    resources: list[dict[str, Any]],
    resource_type: str,
    keep: Callable[[dict], bool] = lambda r: True,
) -> int:
    return sum(1 for r in resources if r["resourceType"] == resource_type and keep(r))


def _codes(concept: dict[str, Any]) -> set[str]:
    return {c["code"] for c in concept.get("coding", [])}


def test_patient_parameters(demo) -> None:
    client, resources = demo
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    p = patients[3]
    family, given = p["name"][0]["family"], p["name"][0]["given"][0]
    same = lambda key, value: sum(1 for q in patients if q["name"][0][key] == value)  # noqa: E731
    assert _total(client, f"/Patient?family={family}") == same("family", family)
    assert _total(client, f"/Patient?family={family[:3].lower()}") == sum(
        1 for q in patients if q["name"][0]["family"].lower().startswith(family[:3].lower())
    )
    starts = lambda q, part: q.lower().startswith(part.lower())  # noqa: E731
    assert _total(client, f"/Patient?given={given}") == sum(
        1 for q in patients if starts(q["name"][0]["given"][0], given)
    )
    assert _total(client, f"/Patient?name={given}") == sum(
        1
        for q in patients
        if starts(q["name"][0]["given"][0], given) or starts(q["name"][0]["family"], given)
    )
    mrn = p["identifier"][0]["value"]
    found = client.get(f"/Patient?identifier={fc.MRN_SYSTEM}|{mrn}").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [p["id"]]
    assert _total(client, f"/Patient?identifier=urn:other|{mrn}") == 0
    assert _total(client, f"/Patient?birthdate={p['birthDate']}") == sum(
        1 for q in patients if q["birthDate"] == p["birthDate"]
    )
    year = p["birthDate"][:4]
    assert _total(client, f"/Patient?birthdate=lt{year}") == sum(
        1 for q in patients if q["birthDate"][:4] < year
    )
    assert _total(client, "/Patient?gender=female") == sum(
        1 for q in patients if q["gender"] == "female"
    )
    phone = p["telecom"][0]["value"]
    assert _total(client, f"/Patient?phone={phone}") == 1
    assert _total(client, "/Patient?address-city=springfield") == len(patients)
    assert _total(client, f"/Patient?_id={p['id']},{patients[0]['id']}") == 2


def test_clinical_parameters(demo) -> None:
    client, resources = demo
    patient = next(r for r in resources if r["resourceType"] == "Patient")["id"]
    mine = lambda r: patient in str(r.get("subject", r.get("patient", {})))  # noqa: E731
    hr = lambda r: "8867-4" in _codes(r["code"])  # noqa: E731
    assert _total(client, f"/Observation?patient={patient}&code=http://loinc.org|8867-4") == _of(
        resources, "Observation", lambda r: mine(r) and hr(r)
    )
    assert _total(client, "/Observation?category=vital-signs") == _of(resources, "Observation")
    fast = _of(resources, "Observation", lambda r: hr(r) and r["valueQuantity"]["value"] >= 90)
    assert _total(client, "/Observation?code=8867-4&value-quantity=ge90") == fast
    assert (
        _total(
            client, "/Observation?code=8867-4&value-quantity=ge90|http://unitsofmeasure.org|/min"
        )
        == fast
    )
    cut = (TODAY - timedelta(days=365)).isoformat()
    assert _total(client, f"/Observation?patient={patient}&date=ge{cut}") == _of(
        resources, "Observation", lambda r: mine(r) and r["effectiveDateTime"][:10] >= cut
    )
    assert _total(client, f"/Observation?patient={patient}&date=lt{cut}") == _of(
        resources, "Observation", lambda r: mine(r) and r["effectiveDateTime"][:10] < cut
    )
    assert _total(client, "/Condition?clinical-status=active") == _of(resources, "Condition")
    assert _total(client, f"/Condition?code={fc.SNOMED}|38341003") == _of(
        resources, "Condition", lambda r: "38341003" in _codes(r["code"])
    )
    assert _total(client, "/AllergyIntolerance?clinical-status=active") == _of(
        resources, "AllergyIntolerance"
    )
    assert _total(client, f"/MedicationRequest?patient={patient}&status=active") == _of(
        resources, "MedicationRequest", mine
    )
    assert _total(
        client, f"/DocumentReference?patient={patient}&type={fc.LOINC}|11506-3&status=current"
    ) == _of(resources, "DocumentReference", mine)
    assert _total(client, f"/Immunization?patient={patient}") == _of(
        resources, "Immunization", mine
    )


def test_schedule_and_location_parameters(demo) -> None:
    client, resources = demo
    location = next(r for r in resources if r["resourceType"] == "Location")["id"]
    at_site = lambda r: f"Location/{location}" in str(r)  # noqa: E731
    assert _total(client, f"/Encounter?location={location}&status=finished") == _of(
        resources, "Encounter", at_site
    )
    today = TODAY.isoformat()
    todays = _of(resources, "Appointment", lambda r: at_site(r) and r["start"][:10] == today)
    assert todays > 0
    assert _total(client, f"/Appointment?location={location}&date={today}&status=booked") == todays
    practitioner = next(
        p["actor"]["reference"] for r in resources if r["resourceType"] == "Appointment"
        for p in r["participant"] if p["actor"]["reference"].startswith("Practitioner/")
    )  # fmt: skip
    assert _total(client, f"/Appointment?practitioner={practitioner}") == _of(
        resources, "Appointment", lambda r: practitioner in str(r["participant"])
    )
    page = client.get(f"/Appointment?location={location}&_sort=date&_count=100").json()
    starts = [e["resource"]["start"] for e in page["entry"]]
    assert starts == sorted(starts)


def test_last_updated_and_sort_by_id(demo) -> None:
    client, resources = demo
    assert _total(client, "/Location?_lastUpdated=gt2000-01-01") == 3
    assert _total(client, "/Location?_lastUpdated=lt2000-01-01") == 0
    ids = [e["resource"]["id"] for e in client.get("/Location?_sort=-_id").json()["entry"]]
    assert ids == sorted(
        (r["id"] for r in resources if r["resourceType"] == "Location"), reverse=True
    )
