"""Every Synthea Bundle and NDJSON file of ../shared/data goes in through the API and comes back.

Runs twice: on a sample (two patients' Bundles and six NDJSON files: the default
suite) and on every file (marked slow). Each is one module-scoped import into a
database of its own: the 2019 transaction
Bundles, the 2020 batch Bundles (both with `urn:uuid:` references between
entries), and the Bulk Data NDJSON export posted as transaction Bundles of PUTs
(its conditional references `Practitioner?identifier=...` are resolved by the
server). Each resource is read back and compared with its input, ignoring
`meta` and the rewriting of references; search results are checked against
counts computed here from the input files, independently of the server.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import client_for

NDJSON_ORDER = (
    "Organization",
    "Location",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "Encounter",
)


class Imported:
    """What went in (by our own reading of the files) and where the server put it."""

    def __init__(self) -> None:
        #: (input file, input resource, its Type/id on the server)
        self.items: list[tuple[str, dict[str, Any], str]] = []
        #: per file: fullUrl or original reference -> Type/id on the server
        self.mapping: dict[str, dict[str, str]] = {}


SAMPLE_PATIENTS = ("Luigi_Wiegand", "Roland928_Nienow652")
SAMPLE_NDJSON = (*NDJSON_ORDER, "AllergyIntolerance", "Immunization")


def _bundle_files(root: Path, sample: bool) -> list[Path]:
    files = []
    for folder in ("bundles-2019", "covid19-juvenile-2020"):
        names = sorted((root / folder).glob("*.json"))
        first = [p for p in names if p.name.startswith(("hospital", "practitioner"))]
        rest = [p for p in names if p not in first]
        if sample:
            rest = [p for p in rest if p.name.startswith(SAMPLE_PATIENTS)]
        files += first + rest
    return files


def _ndjson_files(root: Path, sample: bool) -> list[Path]:
    names = sorted((root / "bulk-ndjson-10-patients").glob("*.ndjson"))
    names = [p for p in names if p.name != "log.ndjson"]
    if sample:
        names = [p for p in names if p.name.split(".")[0] in SAMPLE_NDJSON]
    rank = {t: i for i, t in enumerate(NDJSON_ORDER)}
    return sorted(names, key=lambda p: (rank.get(p.name.split(".")[0], 99), p.name))


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@pytest.fixture(scope="module")
def synthea(shared_data: Path) -> Path:
    return shared_data / "fhir-synthea"


@pytest.fixture(scope="module", params=["sample", pytest.param("all", marks=pytest.mark.slow)])
def imported_server(
    request: pytest.FixtureRequest, server_for_new_database, synthea: Path
) -> Iterator[tuple[Any, Imported]]:
    sample = request.param == "sample"
    with server_for_new_database() as server, client_for(server) as client:
        result = Imported()
        for path in _bundle_files(synthea, sample):
            bundle = json.loads(path.read_text())
            response = client.post(
                "", json=bundle, headers={"Content-Type": "application/fhir+json"}
            )
            assert response.status_code == 200, (path.name, response.text[:500])
            answers = response.json()["entry"]
            assert len(answers) == len(bundle["entry"])
            mapping = {}
            for entry, answer in zip(bundle["entry"], answers, strict=True):
                status = answer["response"]["status"]
                assert status.startswith("201"), (path.name, status)
                where = "/".join(answer["response"]["location"].split("/")[:2])
                mapping[entry["fullUrl"]] = where
                result.items.append((path.name, entry["resource"], where))
            result.mapping[path.name] = mapping
        for path in _ndjson_files(synthea, sample):
            resources = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            for chunk in _chunks(resources, 1000):
                bundle = {
                    "resourceType": "Bundle",
                    "type": "transaction",
                    "entry": [
                        {
                            "resource": r,
                            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                        }
                        for r in chunk
                    ],
                }
                response = client.post("", json=bundle)
                assert response.status_code == 200, (path.name, response.text[:500])
            result.items += [(path.name, r, f"{r['resourceType']}/{r['id']}") for r in resources]
        yield server, result


@pytest.fixture(scope="module")
def client(imported_server) -> Iterator[httpx.Client]:
    with client_for(imported_server[0]) as http:
        yield http


def _identifier_index(items: list[tuple[str, dict[str, Any], str]]) -> dict[str, str]:
    """`Type?identifier=system|value` -> Type/id, computed from the NDJSON input."""
    index: dict[str, str] = {}
    for name, resource, where in items:
        if name.endswith(".ndjson"):
            for ident in resource.get("identifier", []):
                token = f"{ident.get('system')}|{ident.get('value')}"
                index[f"{resource['resourceType']}?identifier={token}"] = where
    return index


def _expected(resource: Any, mapping: dict[str, str], conditional: dict[str, str]) -> Any:
    """The input as the server should hold it: meta dropped, references rewritten."""
    if isinstance(resource, dict):
        out = {}
        for key, value in resource.items():
            if key == "meta":
                continue
            if key == "reference" and isinstance(value, str):
                value = mapping.get(value, conditional.get(value, value))
            out[key] = _expected(value, mapping, conditional)
        return out
    if isinstance(resource, list):
        return [_expected(v, mapping, conditional) for v in resource]
    return resource


def _fetch_all(client: httpx.Client, resource_type: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    url: str | None = f"/{resource_type}?_count=1000"
    while url:
        page = client.get(url)
        assert page.status_code == 200, page.text[:300]
        body = page.json()
        for entry in body.get("entry", []):
            found[entry["resource"]["id"]] = entry["resource"]
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
    return found


def test_every_resource_reads_back_equal_to_its_input(imported_server, client) -> None:
    _, imported = imported_server
    conditional = _identifier_index(imported.items)
    by_type: dict[str, list[tuple[str, dict[str, Any], str]]] = defaultdict(list)
    for item in imported.items:
        by_type[item[1]["resourceType"]].append(item)
    checked = 0
    for resource_type, items in sorted(by_type.items()):
        stored = _fetch_all(client, resource_type)
        for name, resource, where in items:
            got = stored[where.split("/")[1]]
            assert got["meta"]["versionId"] and got["meta"]["lastUpdated"]
            got = {k: v for k, v in got.items() if k != "meta"}
            want = _expected(resource, imported.mapping.get(name, {}), conditional)
            want["id"] = where.split("/")[1]
            assert got == want, (name, where)
            checked += 1
    assert checked == len(imported.items) > 1500
    # and the read interaction itself, on a sample of every type
    for items in by_type.values():
        for _, _, where in items[:: max(1, len(items) // 5)]:
            response = client.get(f"/{where}")
            assert response.status_code == 200
            assert response.json()["id"] == where.split("/")[1]


def _count(client: httpx.Client, query: str) -> int:
    response = client.get(query + ("&" if "?" in query else "?") + "_summary=count")
    assert response.status_code == 200, response.text[:300]
    return int(response.json()["total"])


def _patient_of(resource: dict[str, Any]) -> str | None:
    for key in ("subject", "patient"):
        ref = (
            resource.get(key, {}).get("reference") if isinstance(resource.get(key), dict) else None
        )
        if ref:
            return ref
    return None


def test_search_counts_match_counts_from_the_input(imported_server, client) -> None:
    _, imported = imported_server
    per_patient: Counter[tuple[str, str]] = Counter()
    for name, resource, _ in imported.items:
        ref = _patient_of(resource)
        if ref:
            target = imported.mapping.get(name, {}).get(ref, ref)
            per_patient[(resource["resourceType"], target)] += 1
    checked = 0
    for (resource_type, patient), expected in sorted(per_patient.items()):
        if resource_type in ("Observation", "Encounter", "Condition", "Immunization"):
            assert _count(client, f"/{resource_type}?patient={patient}") == expected
            checked += 1
    assert checked > 10

    heights = sum(
        1
        for _, r, _ in imported.items
        if r["resourceType"] == "Observation"
        and any(c.get("code") == "8302-2" for c in r.get("code", {}).get("coding", []))
    )
    assert heights > 0
    assert _count(client, "/Observation?code=http://loinc.org|8302-2") == heights
    assert _count(client, "/Observation?code=8302-2") == heights
    assert _count(client, "/Observation?code=http://snomed.info/sct|8302-2") == 0

    finished = sum(
        1
        for _, r, _ in imported.items
        if r["resourceType"] == "Encounter" and r["status"] == "finished"
    )
    assert _count(client, "/Encounter?status=finished") == finished

    families = Counter(
        r["name"][0]["family"] for _, r, _ in imported.items if r["resourceType"] == "Patient"
    )
    family, expected = families.most_common(1)[0]
    assert _count(client, f"/Patient?family={family}") >= expected
    assert _count(client, f"/Patient?family:exact={family}") == expected


def test_date_search_and_sort(imported_server, client) -> None:
    _, imported = imported_server
    patient = next(where for _, r, where in imported.items if r["resourceType"] == "Patient")
    observations = [
        r["effectiveDateTime"]
        for name, r, _ in imported.items
        if r["resourceType"] == "Observation"
        and imported.mapping.get(name, {}).get(r["subject"]["reference"]) == patient
    ]
    assert observations
    pivot = sorted(observations)[len(observations) // 2][:10]
    after = sum(1 for d in observations if d[:10] >= pivot)
    assert _count(client, f"/Observation?patient={patient}&date=ge{pivot}") == after
    before = sum(1 for d in observations if d[:10] < pivot)
    assert _count(client, f"/Observation?patient={patient}&date=lt{pivot}") == before

    page = client.get(f"/Observation?patient={patient}&_sort=-date&_count=5").json()
    dates = [e["resource"]["effectiveDateTime"] for e in page["entry"]]
    assert dates == sorted(observations, reverse=True)[:5]


def test_paging_follows_next_links_to_every_match(imported_server, client) -> None:
    total = _count(client, "/Encounter")
    size = max(10, total // 4)
    seen: set[str] = set()
    url: str | None = f"/Encounter?_count={size}"
    pages = 0
    while url:
        body = client.get(url).json()
        seen.update(e["resource"]["id"] for e in body.get("entry", []))
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        pages += 1
    assert len(seen) == total > 1000
    assert pages == -(-total // size)


def test_include_brings_the_referenced_patient(imported_server, client) -> None:
    _, imported = imported_server
    patient = next(where for _, r, where in imported.items if r["resourceType"] == "Patient")
    body = client.get(f"/Encounter?patient={patient}&_include=Encounter:patient&_count=3").json()
    modes = Counter(e["search"]["mode"] for e in body["entry"])
    assert modes["include"] == 1
    included = next(e for e in body["entry"] if e["search"]["mode"] == "include")
    assert f"Patient/{included['resource']['id']}" == patient


def test_care_sites_come_from_encounter_locations(imported_server) -> None:
    server, imported = imported_server
    from sqlalchemy import text

    with server.engine.connect() as conn:
        links = conn.execute(
            text("SELECT count(DISTINCT patient_id) FROM patient_locations")
        ).scalar()
    patients_with_located_encounters = {
        r["subject"]["reference"]
        for name, r, _ in imported.items
        if name.endswith(".ndjson") and r["resourceType"] == "Encounter" and r.get("location")
    }
    assert links >= len(patients_with_located_encounters) > 0
