"""The official FHIR R4 examples of every supported type are accepted and round-trip."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from shared_models.fhir_validation import SUPPORTED_TYPES


def _examples(shared_data: Path) -> list[dict]:
    found = []
    for path in sorted((shared_data / "fhir-examples" / "r4-examples").glob("*.json")):
        resource = json.loads(path.read_text())
        if resource.get("resourceType") in SUPPORTED_TYPES and resource.get("id"):
            found.append(resource)
    return found


def _same_numbers(value: Any) -> Any:
    """Numbers compared by value: 1e18 comes back as 1000000000000000000 (same decimal)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return Decimal(str(value)).normalize()
    if isinstance(value, dict):
        return {k: _same_numbers(v) for k, v in value.items() if k != "meta"}
    if isinstance(value, list):
        return [_same_numbers(v) for v in value]
    return value


def test_official_examples_round_trip(fhir_client: httpx.Client, shared_data: Path) -> None:
    examples = _examples(shared_data)
    assert len({e["resourceType"] for e in examples}) >= 30
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": e, "request": {"method": "PUT", "url": f"{e['resourceType']}/{e['id']}"}}
            for e in examples
        ],
    }
    response = fhir_client.post("", json=batch)
    assert response.status_code == 200, response.text[:300]
    statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
    refused = [
        (e["resourceType"], e["id"], status)
        for e, status in zip(examples, statuses, strict=True)
        if not status.startswith(("200", "201"))
    ]
    assert not refused
    by_type: dict[str, list[dict]] = {}
    for example in examples:
        by_type.setdefault(example["resourceType"], []).append(example)
    by_type.pop("AuditEvent", None)  # read back only by admins: the audit trail's own tests
    for resource_type, group in by_type.items():
        ids = ",".join(e["id"] for e in group)
        found = fhir_client.get(f"/{resource_type}?_id={ids}&_count=1000").json()
        back = {entry["resource"]["id"]: entry["resource"] for entry in found["entry"]}
        for example in group:
            stored = back[example["id"]]
            assert _same_numbers(stored) == _same_numbers(example), example["id"]
            for key in ("tag", "profile", "security"):
                assert stored["meta"].get(key) == example.get("meta", {}).get(key)
    one = examples[0]
    assert fhir_client.get(f"/{one['resourceType']}/{one['id']}").json()["id"] == one["id"]


def test_capability_statement_lists_exactly_what_works(fhir_client: httpx.Client) -> None:
    statement = fhir_client.get("/metadata").json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(resources) == set(SUPPORTED_TYPES)
    # every advertised search parameter is accepted under strict handling
    for resource_type, entry in resources.items():
        if resource_type == "AuditEvent":
            continue  # the admin-only audit view, tested with the audit trail
        for param in entry["searchParam"]:
            value = {"token": "x", "string": "x", "date": "2020", "reference": "Patient/x",
                     "quantity": "5", "number": "5"}[param["type"]]  # fmt: skip
            response = fhir_client.get(
                f"/{resource_type}?{param['name']}={value}&_count=1",
                headers={"Prefer": "handling=strict"},
            )
            assert response.status_code == 200, (resource_type, param, response.text[:200])
        for include in entry.get("searchInclude", []):
            response = fhir_client.get(f"/{resource_type}?_include={include}&_count=1")
            assert response.status_code == 200, include
    assert (
        fhir_client.get("/Patient?nickname=x", headers={"Prefer": "handling=strict"}).status_code
        == 400
    )
