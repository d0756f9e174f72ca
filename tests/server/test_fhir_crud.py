"""FHIR REST over real HTTP: create, read, vread, update with If-Match, delete, history."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
from sqlalchemy import text

from sync_server.db.engine import make_sessionmaker

FHIR = {"Content-Type": "application/fhir+json"}


def _patient(family: str) -> dict:
    return {
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1980-02-29",
    }


def _versions(live_server, resource_type: str, resource_id: str) -> list[tuple[int, bool]]:
    with make_sessionmaker(live_server.engine)() as session:
        rows = session.execute(
            text(
                "SELECT version_id, deleted FROM resource_versions"
                " WHERE resource_type = :t AND id = :i ORDER BY seq"
            ),
            {"t": resource_type, "i": resource_id},
        )
        return [(r[0], r[1]) for r in rows]


def test_create_read_update_delete_history(fhir_client: httpx.Client, live_server) -> None:
    created = fhir_client.post("/Patient", json=_patient("Lovelace"), headers=FHIR)
    assert created.status_code == 201, created.text
    body = created.json()
    pid = body["id"]
    uuid.UUID(pid)
    assert body["meta"]["versionId"] == "1"
    assert created.headers["ETag"] == 'W/"1"'
    assert created.headers["Location"].endswith(f"/Patient/{pid}/_history/1")

    read = fhir_client.get(f"/Patient/{pid}")
    assert read.status_code == 200
    assert read.headers["content-type"].startswith("application/fhir+json")
    assert read.json()["name"][0]["family"] == "Lovelace"

    changed = {**read.json(), "gender": "other"}
    updated = fhir_client.put(f"/Patient/{pid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"

    stale = fhir_client.put(f"/Patient/{pid}", json=changed, headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert stale.json()["resourceType"] == "OperationOutcome"

    v1 = fhir_client.get(f"/Patient/{pid}/_history/1")
    assert v1.json()["gender"] == "female"
    assert fhir_client.delete(f"/Patient/{pid}").status_code == 204
    gone = fhir_client.get(f"/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"

    history = fhir_client.get(f"/Patient/{pid}/_history").json()
    assert history["type"] == "history"
    methods = [e["request"]["method"] for e in history["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]
    assert _versions(live_server, "Patient", pid) == [(1, False), (2, False), (3, True)]


def test_update_creates_with_client_id(fhir_client: httpx.Client) -> None:
    pid = str(uuid.uuid4())
    response = fhir_client.put(f"/Patient/{pid}", json={**_patient("Hopper"), "id": pid})
    assert response.status_code == 201
    assert fhir_client.get(f"/Patient/{pid}").json()["id"] == pid


def test_concurrent_if_match_exactly_one_wins(fhir_client: httpx.Client, live_server) -> None:
    pid = fhir_client.post("/Patient", json=_patient("Curie")).json()["id"]
    statuses: list[int] = []
    barrier = threading.Barrier(8)

    def attempt(n: int) -> None:
        with httpx.Client(base_url=live_server.fhir_url, timeout=30) as client:
            body = {**_patient("Curie"), "id": pid, "gender": ["male", "female"][n % 2]}
            barrier.wait()
            statuses.append(
                client.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'}).status_code
            )

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [412] * 7
    assert _versions(live_server, "Patient", pid) == [(1, False), (2, False)]


def test_conditional_create(fhir_client: httpx.Client) -> None:
    system, value = "urn:oid:2.16.840.1.113883.19.5.99999.1", uuid.uuid4().hex
    body = {**_patient("Noether"), "identifier": [{"system": system, "value": value}]}
    header = {"If-None-Exist": f"identifier={system}|{value}"}
    first = fhir_client.post("/Patient", json=body, headers=header)
    second = fhir_client.post("/Patient", json=body, headers=header)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


def test_fhirpy_style_plain_json_is_accepted(fhir_client: httpx.Client) -> None:
    response = fhir_client.post(
        "/Patient",
        content=json.dumps(_patient("Plain")),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 201


def test_type_history_post_search_and_unsupported_method(fhir_client: httpx.Client) -> None:
    family = f"Hist{uuid.uuid4().hex[:8]}"
    pid = fhir_client.post("/Patient", json=_patient(family)).json()["id"]
    fhir_client.put(f"/Patient/{pid}", json={**_patient(family), "id": pid, "gender": "other"})
    history = fhir_client.get("/Patient/_history?_count=2").json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert any(link["relation"] == "next" for link in history["link"])

    found = fhir_client.post(
        "/Patient/_search",
        content=f"family={family}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [pid]

    patch = fhir_client.patch(f"/Patient/{pid}", json=[])
    assert patch.status_code == 405
    assert patch.json()["resourceType"] == "OperationOutcome"
