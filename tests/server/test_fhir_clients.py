"""Real FHIR client libraries run a read/search/create flow against the live server, unchanged."""

from __future__ import annotations

import uuid

from fhirclient import client as smart_client
from fhirclient.models.humanname import HumanName
from fhirclient.models.patient import Patient
from fhirpy import SyncFHIRClient

from tests.server.conftest import auth_headers


def test_fhirclient_create_read_search(live_server) -> None:
    smart = smart_client.FHIRClient(
        settings={"app_id": "clinic-tests", "api_base": live_server.fhir_url + "/"}
    )
    for name, value in auth_headers(live_server).items():
        smart.server.session.headers[name] = value
    smart.prepare()  # reads /metadata and parses our CapabilityStatement with its models
    assert smart.server.capabilityStatement.fhirVersion == "4.0.1"
    family = f"Fc{uuid.uuid4().hex[:8]}"
    patient = Patient({"gender": "female", "birthDate": "1961-07-04"})
    name = HumanName({"family": family, "given": ["Ruth"]})
    patient.name = [name]
    created = patient.create(smart.server)
    new_id = created["id"]

    read = Patient.read(new_id, smart.server)
    assert read.name[0].family == family
    assert read.birthDate.isostring == "1961-07-04"

    found = Patient.where(struct={"family": family}).perform_resources(smart.server)
    assert [p.id for p in found] == [new_id]


def test_fhirpy_create_read_search_count(live_server) -> None:
    headers = auth_headers(live_server)
    fhir = SyncFHIRClient(
        live_server.fhir_url, authorization=headers.get("Authorization"),
        extra_headers={k: v for k, v in headers.items() if k != "Authorization"},
    )  # fmt: skip
    family = f"Py{uuid.uuid4().hex[:8]}"
    for given in ("Ann", "Bob", "Cy"):
        fhir.resource("Patient", name=[{"family": family, "given": [given]}], gender="other").save()
    patients = fhir.resources("Patient").search(family=family).sort("given").fetch()
    assert [p["name"][0]["given"][0] for p in patients] == ["Ann", "Bob", "Cy"]
    assert fhir.resources("Patient").search(family=family).count() == 3

    first = patients[0]
    first["gender"] = "female"
    first.save()
    again = fhir.reference("Patient", first["id"]).to_resource()
    assert again["gender"] == "female"
    assert again["meta"]["versionId"] == "2"

    observation = fhir.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        subject={"reference": f"Patient/{first['id']}"},
        valueQuantity={
            "value": 72,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        effectiveDateTime="2024-05-01T10:00:00Z",
    )
    observation.save()
    found = (
        fhir.resources("Observation")
        .search(patient=first["id"], code="http://loinc.org|8867-4")
        .include("Observation", "patient")
        .fetch_raw()
    )
    modes = sorted(e["search"]["mode"] for e in found["entry"])
    assert modes == ["include", "match"]
