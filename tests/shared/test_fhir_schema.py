"""The fast schema check never accepts what the R4B models refuse, and takes real data.

The property that keeps `validate_resource`'s contract: whenever the compiled
schema passes a resource, the pydantic models accept it too. It is checked on
real resources (official examples and Synthea) and on systematic mutations of
them: every element deleted, nulled, given a wrong type or a bad value, wrapped
or unwrapped, and unknown keys added.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from shared_models.errors import ValidationFailed
from shared_models.fhir_schema import passes_fast_check
from shared_models.fhir_validation import SUPPORTED_TYPES, _model, validate_resource
from shared_models.outcomes import from_error

BAD_VALUES: tuple[Any, ...] = (
    None, "", " padded ", "x", "2019-02-30", "2019-13", "2019-01-01T25:00:00Z", "yes", "true",
    "5", 0, -1, 1.5, 2**31, True, [], {}, [None], {"bogus": 1}, "urn:uuid:not-a-uuid",
)  # fmt: skip


def _synthea_resources(shared_data: Path) -> Iterator[dict[str, Any]]:
    root = shared_data / "fhir-synthea"
    for path in sorted(root.glob("*/*.json")):
        for entry in orjson.loads(path.read_bytes())["entry"]:
            yield entry["resource"]
    for path in sorted(root.glob("*/*.ndjson")):
        if path.name != "log.ndjson":
            for line in path.read_bytes().splitlines():
                if line.strip():
                    yield orjson.loads(line)


def _example_resources(shared_data: Path) -> Iterator[dict[str, Any]]:
    for path in sorted((shared_data / "fhir-examples" / "r4-examples").glob("*.json")):
        resource = orjson.loads(path.read_bytes())
        if resource.get("resourceType") == "Bundle":
            for entry in resource.get("entry") or []:
                if isinstance(entry.get("resource"), dict):
                    yield entry["resource"]
        else:
            yield resource


def _models_accept(resource: dict[str, Any]) -> bool:
    try:
        _model(resource["resourceType"]).model_validate(resource)
    except ValidationError:
        return False
    return True


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if path or key != "resourceType":
                yield (*path, key)
                yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield (*path, index)
            yield from _paths(value, (*path, index))


_DELETE, _ADD_UNKNOWN = object(), object()
#: (resource, path to an element, what to put there: a value, _DELETE or _ADD_UNKNOWN)
Recipe = tuple[dict[str, Any], tuple[Any, ...], Any]


def _recipes(resource: dict[str, Any]) -> Iterator[Recipe]:
    for path in _paths(resource):
        value = resource
        for step in path:
            value = value[step]
        replacements: list[Any] = list(BAD_VALUES)
        if isinstance(value, list) and value:
            replacements.append(value[0])  # a single element where a list belongs
        if isinstance(value, dict):
            replacements.append([value])  # a list where a single element belongs
        if isinstance(path[-1], str):
            replacements += [_DELETE, _ADD_UNKNOWN]
        for replacement in replacements:
            yield resource, path, replacement


def _mutant(recipe: Recipe) -> dict[str, Any]:
    resource, path, replacement = recipe
    mutant = copy.deepcopy(resource)
    holder = mutant
    for step in path[:-1]:
        holder = holder[step]
    if replacement is _DELETE:
        del holder[path[-1]]
    elif replacement is _ADD_UNKNOWN:
        holder["bogusElement"] = "x"
    else:
        holder[path[-1]] = replacement
    return mutant


def _one_per_type(resources: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    chosen: dict[str, dict[str, Any]] = {}
    for resource in resources:
        kind = resource.get("resourceType")
        if kind in SUPPORTED_TYPES and kind not in chosen and _models_accept(resource):
            chosen[kind] = resource
    return list(chosen.values())


def _check_mutants(resources: list[dict[str, Any]], limit: int | None, seed: int) -> int:
    recipes = [recipe for r in resources for recipe in _recipes(r)]
    if limit is not None:
        recipes = random.Random(seed).sample(recipes, min(limit, len(recipes)))
    passed_fast = 0
    for mutant in map(_mutant, recipes):
        if passes_fast_check(mutant, mutant["resourceType"]):
            passed_fast += 1
            assert _models_accept(mutant), json.dumps(mutant)[:400]
    return passed_fast


def test_all_synthea_data_passes_the_fast_check(shared_data: Path) -> None:
    count = 0
    for resource in _synthea_resources(shared_data):
        assert resource["resourceType"] in SUPPORTED_TYPES
        assert passes_fast_check(resource, resource["resourceType"]), resource["resourceType"]
        count += 1
    assert count > 10_000


def test_official_examples_of_supported_types_are_accepted(shared_data: Path) -> None:
    fast = checked = 0
    for resource in _example_resources(shared_data):
        kind = resource.get("resourceType")
        if kind not in SUPPORTED_TYPES:
            continue
        assert validate_resource(resource) == kind
        checked += 1
        fast += passes_fast_check(resource, kind)
    assert checked > 500 and fast > 0.9 * checked  # the rest took the models' path


def test_fast_check_passes_only_what_the_models_accept(shared_data: Path) -> None:
    resources = _one_per_type(_synthea_resources(shared_data))
    assert _check_mutants(resources, limit=800, seed=2) > 50


@pytest.mark.slow
def test_fast_check_passes_only_what_the_models_accept_everywhere(shared_data: Path) -> None:
    resources = _one_per_type(_synthea_resources(shared_data))
    resources += _one_per_type(_example_resources(shared_data))
    assert _check_mutants(resources, limit=None, seed=0) > 1000


@pytest.mark.parametrize(
    ("resource", "element"),
    [
        (
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "t"},
                "valueInteger": 5,
                "valueString": "five",
            },
            "Observation",
        ),
        ({"resourceType": "Observation", "status": "final"}, "Observation.code"),
        ({"resourceType": "Patient", "name": [None]}, "Patient.name"),
        ({"resourceType": "Patient", "_birthDate": {}}, "Patient._birthDate"),
        (
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/1"},
                "medicationReference": {"reference": "#m"},
                "contained": [
                    {
                        "resourceType": "Medication",
                        "id": "m",
                        "batch": {"expirationDate": "2019-02-30"},
                    }
                ],
            },
            "MedicationRequest.contained[0]",
        ),
    ],
)
def test_refused_by_the_models_and_named(resource: dict[str, Any], element: str) -> None:
    assert not passes_fast_check(resource, resource["resourceType"])
    with pytest.raises(ValidationFailed) as caught:
        validate_resource(resource)
    status, body = from_error(caught.value)
    assert status == 400
    assert any(e.startswith(element) for i in body["issue"] for e in i.get("expression", []))
    assert "2019-02-30" not in json.dumps(body)
