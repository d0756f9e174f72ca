"""The bulk import stores exactly what the per-resource repository path stores.

Two databases get the same resources: one through `Importer` (bulk_load: COPY,
set-based upserts), the other one resource at a time through
`FhirRepository.write_version`. Every table the record is made of is then
compared row by row (current rows, history, search index, care sites), the
commit-time stamps aside. The resources are Bulk Data NDJSON files and a
Synthea patient Bundle (its `urn:uuid:` references pointed at the resources'
own ids, as a collection Bundle carries them); a second round of the same
files checks the update path (version 2, index and care-site rows replaced).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, text

from sync_server.db.engine import make_engine, make_sessionmaker, migrate
from sync_server.db.models import INDEX_TABLES
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import FhirRepository, fhir_instant
from sync_server.services.importer import Importer
from sync_server.services.system_access import SystemAudit, SystemGuard

CTX = RequestContext.for_system("test-import")
NDJSON = ("Organization", "Location", "Practitioner", "Patient", "Encounter", "AllergyIntolerance")
BUNDLE = "Lyle_Baumbach_40a23e3f-fc1e-4333-8588-c5aaa9aa7c9b.json"


def _rewrite(node: Any, targets: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in targets:
                node[key] = targets[value]
            else:
                _rewrite(value, targets)
    elif isinstance(node, list):
        for item in node:
            _rewrite(item, targets)


@pytest.fixture(scope="module")
def files(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = shared_data / "fhir-synthea" / "bulk-ndjson-10-patients"
    paths = [folder / f"{name}.000.ndjson" for name in NDJSON]
    written = tmp_path_factory.mktemp("bulk")
    # Encounters name their Location by a conditional reference: resolve it (as the
    # server does for a transaction) so they make care-site links.
    by_identifier = {
        f"{kind}?identifier={i['system']}|{i['value']}": f"{kind}/{r['id']}"
        for p in paths[:3] for r in _resources_of(p) for i in r.get("identifier", [])
        for kind in [r["resourceType"]]
    }  # fmt: skip
    encounters = _resources_of(paths[4])[:200]
    _rewrite(encounters, by_identifier)
    paths[4] = written / "Encounter.resolved.ndjson"
    paths[4].write_bytes(b"\n".join(orjson.dumps(r) for r in encounters) + b"\n")
    bundle = json.loads((shared_data / "fhir-synthea" / "bundles-2019" / BUNDLE).read_text())
    targets = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle["entry"]
    }
    resources = [e["resource"] for e in bundle["entry"]]
    _rewrite(resources, targets)
    collection = written / "synthea-collection.json"
    collection.write_bytes(
        orjson.dumps(
            {"resourceType": "Bundle", "type": "collection",
             "entry": [{"resource": r} for r in resources]}
        )
    )  # fmt: skip
    return [*paths, collection]


def _resources_of(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".ndjson":
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [e["resource"] for e in orjson.loads(path.read_bytes())["entry"]]


def _engine(create_database: Callable[[], str]) -> Iterator[Engine]:
    engine = make_engine(create_database())
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def bulk_engine(create_database: Callable[[], str]) -> Iterator[Engine]:
    yield from _engine(create_database)


@pytest.fixture(scope="module")
def repo_engine(create_database: Callable[[], str]) -> Iterator[Engine]:
    yield from _engine(create_database)


def _bulk_import(engine: Engine, paths: list[Path]) -> None:
    importer = Importer(engine, CTX, SystemGuard(), SystemAudit(), batch_size=300)
    summary = importer.import_files(paths)
    assert not summary.errors
    assert summary.resources == sum(len(_resources_of(p)) for p in paths)


def _one_by_one(engine: Engine, paths: list[Path]) -> None:
    with make_sessionmaker(engine)() as session:
        repo = FhirRepository(session, CTX, SystemGuard(), SystemAudit())
        for path in paths:
            for resource in _resources_of(path):
                repo.write_version(resource["resourceType"], resource["id"], resource)
            session.commit()


def _state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the record, ordered; JSON without its commit-time stamp."""
    body = "(resource #- '{meta,lastUpdated}')::text"
    queries = {
        "resources": f"SELECT resource_type, id, version_id, deleted, patient_id, {body}"
        " FROM resources ORDER BY 1, 2",
        "resource_versions": f"SELECT resource_type, id, version_id, deleted, patient_id, {body}"
        " FROM resource_versions ORDER BY 1, 2, 3",
        "patient_locations": "SELECT * FROM patient_locations ORDER BY 1, 2, 3",
        **{table: f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4" for table in INDEX_TABLES.values()},
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(text(sql))] for name, sql in queries.items()}


def _stamps_match(engine: Engine) -> None:
    """meta.lastUpdated is the row's commit-time stamp, in history as in current rows."""
    with engine.connect() as conn:
        for table in ("resources", "resource_versions"):
            rows = conn.execute(
                text(f"SELECT last_updated, resource->'meta'->>'lastUpdated' FROM {table}")
            ).all()
            assert rows and all(fhir_instant(stamp) == meta for stamp, meta in rows)


def test_bulk_import_stores_what_the_repository_stores(
    bulk_engine: Engine, repo_engine: Engine, files: list[Path]
) -> None:
    _bulk_import(bulk_engine, files)
    _one_by_one(repo_engine, files)
    bulk, one_by_one = _state(bulk_engine), _state(repo_engine)
    assert len(bulk["resources"]) == sum(len(_resources_of(p)) for p in files)
    assert [table for table in bulk if not bulk[table]] == []  # rows to compare everywhere
    for table in bulk:
        assert bulk[table] == one_by_one[table], table
    _stamps_match(bulk_engine)


def test_importing_again_writes_version_two_like_the_repository(
    bulk_engine: Engine, repo_engine: Engine, files: list[Path]
) -> None:
    again = [p for p in files if p.name.startswith(("Encounter", "synthea"))]
    _bulk_import(bulk_engine, again)
    _one_by_one(repo_engine, again)
    bulk, one_by_one = _state(bulk_engine), _state(repo_engine)
    assert max(row[2] for row in bulk["resources"]) == 2
    for table in bulk:
        assert bulk[table] == one_by_one[table], table
    _stamps_match(bulk_engine)


def test_a_bad_line_is_refused_alone_and_a_repeated_id_becomes_a_new_version(
    create_database: Callable[[], str], shared_data: Path, tmp_path: Path
) -> None:
    folder = shared_data / "fhir-synthea" / "bulk-ndjson-10-patients"
    patients = [json.loads(x) for x in (folder / "Patient.000.ndjson").read_text().splitlines()]
    bad = {**patients[1], "birthDate": "1970-02-30"}
    lines = [patients[0], bad, patients[2], patients[0]]
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join(json.dumps(p) for p in lines) + "\n")
    for engine in _engine(create_database):
        summary = Importer(engine, CTX, SystemGuard(), SystemAudit()).import_files([path])
        assert [(n, number) for n, number, _ in summary.errors] == [("mixed.ndjson", 2)]
        assert "1970-02-30" not in summary.errors[0][2] and "birthDate" in summary.errors[0][2]
        assert summary.resources == 3
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, version_id FROM resources")).all()
        versions: dict[str, int] = {row[0]: row[1] for row in rows}
        assert versions == {patients[0]["id"]: 2, patients[2]["id"]: 1}


def test_conditional_references_of_a_bulk_export_are_resolved_in_any_file_order(
    create_database: Callable[[], str], shared_data: Path
) -> None:
    """Synthea's export names Locations by identifier; Encounter sorts before Location."""
    folder = shared_data / "fhir-synthea" / "bulk-ndjson-10-patients"
    names = ("Encounter", "Location", "Organization", "Patient", "Practitioner")
    paths = [folder / f"{name}.000.ndjson" for name in names]
    by_identifier = {
        f"{kind}?identifier={i['system']}|{i['value']}": f"{kind}/{r['id']}"
        for p in paths[1:] for r in _resources_of(p) for i in r.get("identifier", [])
        for kind in [r["resourceType"]]
    }  # fmt: skip
    encounters = _resources_of(paths[0])
    expected_sites = {
        (e["subject"]["reference"].split("/")[1], target.split("/")[1])
        for e in encounters for place in e.get("location", [])
        if (target := by_identifier.get(place["location"]["reference"]))
    }  # fmt: skip
    assert expected_sites  # the export does name known locations
    for engine in _engine(create_database):
        summary = Importer(engine, CTX, SystemGuard(), SystemAudit()).import_files(paths)
        assert not summary.errors
        with engine.connect() as conn:
            sites = set(conn.execute(text("SELECT patient_id, location_id FROM patient_locations")))
            stored = {
                row[0]: row[1]
                for row in conn.execute(
                    text("SELECT id, resource FROM resources WHERE resource_type = 'Encounter'")
                )
            }
        assert {tuple(row) for row in sites} == expected_sites
        for encounter in encounters:
            got = stored[encounter["id"]]
            want = encounter["participant"][0]["individual"]["reference"]
            assert got["participant"][0]["individual"]["reference"] == by_identifier[want]
            assert (
                got["serviceProvider"]["reference"]
                == by_identifier[encounter["serviceProvider"]["reference"]]
            )
