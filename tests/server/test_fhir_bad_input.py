"""Bad input gets a clear OperationOutcome and changes nothing."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy import text


def _outcome(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "Traceback" not in response.text
    return body


@pytest.fixture()
def row_count(live_server):
    def count() -> int:
        with live_server.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM resource_versions")).scalar())

    return count


def test_malformed_json(fhir_client: httpx.Client, row_count) -> None:
    before = row_count()
    body = _outcome(
        fhir_client.post(
            "/Patient",
            content=b'{"resourceType": "Patient",',
            headers={"Content-Type": "application/fhir+json"},
        ),
        400,
    )
    assert "JSON" in body["issue"][0]["diagnostics"]
    assert row_count() == before


def test_wrong_resource_type_for_the_url(fhir_client: httpx.Client, row_count) -> None:
    before = row_count()
    _outcome(fhir_client.post("/Observation", json={"resourceType": "Patient"}), 400)
    pid = str(uuid.uuid4())
    _outcome(
        fhir_client.put(f"/Observation/{pid}", json={"resourceType": "Patient", "id": pid}), 400
    )
    assert row_count() == before


def test_invalid_element_is_named_and_not_echoed(fhir_client: httpx.Client, row_count) -> None:
    before = row_count()
    secret = "1970-99-99-Smith"
    body = _outcome(
        fhir_client.post("/Patient", json={"resourceType": "Patient", "birthDate": secret}), 400
    )
    assert body["issue"][0]["expression"] == ["Patient.birthDate"]
    assert secret not in json.dumps(body)
    assert row_count() == before


def test_unknown_type_and_unknown_id(fhir_client: httpx.Client) -> None:
    _outcome(fhir_client.get("/Spaceship/1"), 404)
    _outcome(fhir_client.get(f"/Patient/{uuid.uuid4()}"), 404)
    _outcome(fhir_client.get("/no/such/route/at/all"), 404)


def test_unknown_search_parameter_follows_the_handling_preference(
    fhir_client: httpx.Client,
) -> None:
    lenient = fhir_client.get("/Patient?shoe-size=42&_count=1")
    assert lenient.status_code == 200
    outcomes = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert "shoe-size" in outcomes[0]["resource"]["issue"][0]["diagnostics"]
    strict = fhir_client.get("/Patient?shoe-size=42", headers={"Prefer": "handling=strict"})
    body = _outcome(strict, 400)
    assert body["issue"][0]["expression"] == ["shoe-size"]
    _outcome(fhir_client.get("/Observation?date=yesterday"), 400)
    _outcome(fhir_client.get("/Patient?_count=many"), 400)


def test_oversized_body_is_refused(fhir_client: httpx.Client, live_server, row_count) -> None:
    before = row_count()
    limit = live_server.app.state.settings.max_body_bytes
    huge = b'{"resourceType": "Patient", "text": "' + b"x" * (limit + 10) + b'"}'
    _outcome(
        fhir_client.post(
            "/Patient", content=huge, headers={"Content-Type": "application/fhir+json"}
        ),
        413,
    )

    def chunks():
        yield huge[: limit // 2]
        yield huge[limit // 2 :]

    streamed = fhir_client.post(
        "/Patient", content=chunks(), headers={"Content-Type": "application/fhir+json"}
    )
    _outcome(streamed, 413)
    assert row_count() == before


def test_unsupported_content_type(fhir_client: httpx.Client) -> None:
    _outcome(
        fhir_client.post(
            "/Patient", content=b"<Patient/>", headers={"Content-Type": "application/xml"}
        ),
        415,
    )


def _transaction(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def _post_entry(resource: dict, full_url: str | None = None) -> dict:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def test_transaction_with_invalid_reference_stores_nothing(
    fhir_client: httpx.Client, row_count
) -> None:
    before = row_count()
    patient = _post_entry(
        {"resourceType": "Patient", "gender": "male"}, "urn:uuid:" + str(uuid.uuid4())
    )
    dangling = _post_entry(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "urn:uuid:" + str(uuid.uuid4())},
        }
    )
    body = _outcome(fhir_client.post("", json=_transaction(patient, dangling)), 400)
    assert body["issue"][0]["expression"] == ["Bundle.entry[1].resource.subject"]
    missing = _post_entry(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{uuid.uuid4()}"},
        }
    )
    _outcome(fhir_client.post("", json=_transaction(patient, missing)), 400)
    assert row_count() == before


def test_transaction_with_an_invalid_resource_stores_nothing(
    fhir_client: httpx.Client, row_count
) -> None:
    before = row_count()
    good = _post_entry({"resourceType": "Patient", "gender": "female"})
    bad = _post_entry({"resourceType": "Patient", "birthDate": "someday"})
    body = _outcome(fhir_client.post("", json=_transaction(good, bad)), 400)
    assert body["issue"][0]["expression"] == ["Bundle.entry[1].resource.birthDate"]
    assert row_count() == before


def test_batch_entries_fail_alone(fhir_client: httpx.Client) -> None:
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            _post_entry({"resourceType": "Patient", "gender": "female"}),
            _post_entry({"resourceType": "Patient", "birthDate": "someday"}),
            {"request": {"method": "GET", "url": f"Patient/{uuid.uuid4()}"}},
        ],
    }
    response = fhir_client.post("", json=batch)
    assert response.status_code == 200
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[0].startswith("201")
    assert statuses[1] == "400" and statuses[2] == "404"
