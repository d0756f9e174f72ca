"""The fast read path: one unit of work per request, reads in autocommit, a route matched first.

Reads, searches and history run their context lookup, query, access check and
audit INSERT in one thread hop, without BEGIN/COMMIT (`deps.in_unit_of_work`);
GET by id is matched before every router (`fhir.fast_read_route`). These tests
check that nothing a read must do was lost on the way, and that the pooled
connections a read used still give writes their transaction.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from identity_support import (
    TwoSites,
    audit_rows,
    bearer,
    login,
    make_user,
)
from sqlalchemy import text


@pytest.fixture(scope="module")
def doctor(server: Any, sites: TwoSites) -> Any:
    user = make_user(server, "dr.readpath", ["physician"], [sites.location_mine])
    with httpx.Client(base_url=server.url) as plain:
        token = login(plain, user)["access_token"]
    with httpx.Client(base_url=server.url, headers=bearer(token), timeout=30) as client:
        yield client


def _outcome(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body


def _stored(server: Any, resource_type: str, resource_id: str) -> Any:
    with server.engine.connect() as conn:
        return conn.execute(
            text("SELECT resource::text FROM resources WHERE resource_type = :t AND id = :i"),
            {"t": resource_type, "i": resource_id},
        ).scalar_one()


def _reads_of(server: Any, resource_id: str, outcome: str) -> int:
    rows = audit_rows(server, username="dr.readpath", action="read", outcome=outcome)
    return sum(1 for r in rows if r["resource_id"] == resource_id)


def test_a_read_is_served_as_stored_and_audited_once(
    server: Any, sites: TwoSites, doctor: httpx.Client
) -> None:
    mine = sites.mine[0]
    response = doctor.get(f"/fhir/R4/Patient/{mine}")
    assert response.status_code == 200, response.text
    assert orjson.loads(response.content) == orjson.loads(_stored(server, "Patient", mine))
    assert response.headers["etag"].startswith('W/"')
    assert _reads_of(server, mine, "success") == 1  # committed before the answer
    doctor.get(f"/fhir/R4/Patient/{mine}")
    assert _reads_of(server, mine, "success") == 2


def test_refused_and_missing_reads_are_outcomes_and_audited(
    server: Any, sites: TwoSites, doctor: httpx.Client
) -> None:
    other = sites.other[0]
    _outcome(doctor.get(f"/fhir/R4/Patient/{other}"), 403)
    assert _reads_of(server, other, "denied") == 1
    assert _reads_of(server, other, "success") == 0
    missing = str(uuid.uuid4())
    _outcome(doctor.get(f"/fhir/R4/Patient/{missing}"), 404)
    assert _reads_of(server, missing, "failure") == 1
    _outcome(httpx.get(f"{server.url}/fhir/R4/Patient/{sites.mine[0]}"), 401)


def test_paths_the_fast_routes_do_not_own_reach_their_routes(
    server: Any, sites: TwoSites, doctor: httpx.Client
) -> None:
    history = doctor.get(f"/fhir/R4/Patient/{sites.mine[0]}/_history")
    assert history.json()["type"] == "history"
    assert doctor.get("/fhir/R4/Patient/_history").json()["type"] == "history"
    smart = doctor.get("/fhir/R4/.well-known/smart-configuration")
    assert "authorization_endpoint" in smart.json()
    _outcome(doctor.get("/fhir/R4/Patient/not_a!valid_id"), 404)  # the FastAPI route's answer
    _outcome(doctor.get("/fhir/R4/Spaceship/1"), 404)
    assert doctor.head(f"/fhir/R4/Patient/{sites.mine[0]}").status_code == 405  # as before
    read_label = 'method="GET",route="/fhir/R4/{resource_type}/{resource_id}",status="200"'
    audit_label = 'method="GET",route="/fhir/R4/AuditEvent",status="403"'
    reads, audit_searches = _served(server, read_label), _served(server, audit_label)
    assert doctor.get(f"/fhir/R4/Patient/{sites.mine[0]}").status_code == 200
    assert doctor.get("/fhir/R4/AuditEvent").status_code == 403  # admin's search, not ours
    assert _served(server, read_label) == reads + 1  # same metrics label as before
    assert _served(server, audit_label) == audit_searches + 1


def _served(server: Any, labels: str) -> float:
    """`ehr_http_requests_total` for one label set (0 before the first such request)."""
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(f"ehr_http_requests_total{{{labels}}}"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_writes_after_many_reads_are_still_all_or_nothing(
    server: Any, sites: TwoSites, doctor: httpx.Client
) -> None:
    """Reads borrow pooled connections in autocommit; a write on one must get its transaction."""
    mine = sites.mine[0]
    for _ in range(30):  # more reads than the pool has connections
        assert doctor.get(f"/fhir/R4/Patient/{mine}").status_code == 200
    searched = doctor.get("/fhir/R4/Encounter", params={"patient": mine})
    assert searched.json()["type"] == "searchset"
    stale = orjson.loads(_stored(server, "Patient", mine))
    new_id = f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": new_id,
                "resource": {"resourceType": "Patient", "gender": "female"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": stale,
                "request": {"method": "PUT", "url": f"Patient/{mine}", "ifMatch": 'W/"999"'},
            },
        ],
    }
    with server.engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM resource_versions")).scalar_one()
    response = doctor.post("/fhir/R4", json=bundle)
    assert response.status_code in (409, 412), response.text[:300]
    with server.engine.connect() as conn:
        after = conn.execute(text("SELECT count(*) FROM resource_versions")).scalar_one()
    assert after == before
