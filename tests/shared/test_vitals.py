"""Vital-sign plausibility rules and the Observations built from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from shared_models.fhir_validation import validate_resource
from shared_models.vitals import (
    VITAL_SIGNS,
    check_vitals,
    parse_vital,
    readings_of,
    vitals_observations,
)

NOW = datetime(2026, 11, 28, 10, 42, tzinfo=UTC)


def test_plausible_set_passes_and_builds_valid_observations() -> None:
    values = {"systolic": 128.0, "diastolic": 82.0, "heart_rate": 71.0, "temperature": 37.1,
              "spo2": 97.0, "weight": 81.4, "resp_rate": 14.0}  # fmt: skip
    assert check_vitals(values) == []
    observations = vitals_observations("p1", values, NOW, performer="Practitioner/n1")
    # BP is one panel with two components, the rest one Observation each.
    assert len(observations) == 6
    for obs in observations:
        validate_resource(obs)
    merged: dict[str, float] = {}
    for obs in observations:
        merged.update(readings_of(obs))
    assert merged == values


def test_spo2_above_100_is_explained() -> None:
    problems = check_vitals({"spo2": 160.0})
    assert [p.key for p in problems] == ["spo2"]
    assert "cannot be above 100" in problems[0].message
    assert "50" in problems[0].message and "100" in problems[0].message


def test_systolic_must_exceed_diastolic() -> None:
    problems = check_vitals({"systolic": 70.0, "diastolic": 120.0})
    assert len(problems) == 1
    assert problems[0].key == "systolic"
    assert "swapped" in problems[0].message


def test_fahrenheit_temperature_gets_a_hint() -> None:
    (problem,) = check_vitals({"temperature": 98.6})
    assert problem.key == "temperature"
    assert "°F" in problem.message and "°C" in problem.message


def test_half_a_blood_pressure_is_refused() -> None:
    (problem,) = check_vitals({"systolic": 120.0})
    assert problem.key == "diastolic"


def test_empty_set_is_refused() -> None:
    (problem,) = check_vitals({})
    assert problem.key is None


def test_parse_accepts_decimal_comma_and_explains_garbage() -> None:
    assert parse_vital("temperature", " 37,4 ") == (37.4, None)
    assert parse_vital("weight", "") == (None, None)
    value, problem = parse_vital("heart_rate", "seventy")
    assert value is None and problem is not None and "number" in problem.message
    assert parse_vital("spo2", "nan")[1] is not None


def test_synthea_observations_are_read(shared_data) -> None:
    bundle = json.loads(
        next((shared_data / "fhir-synthea" / "bundles-2019").glob("[A-Z]*.json")).read_text()
    )
    found: dict[str, int] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Observation":
            for key, value in readings_of(resource).items():
                assert VITAL_SIGNS[key].low <= value <= VITAL_SIGNS[key].high
                found[key] = found.get(key, 0) + 1
    assert {"systolic", "diastolic", "weight"} <= found.keys()


@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(sorted(VITAL_SIGNS)))
def test_range_rule_matches_limits(value: float, key: str) -> None:
    values: dict[str, float | None] = {key: value}
    if key in ("systolic", "diastolic"):
        values = {"systolic": value, "diastolic": value - 1} if key == "systolic" else {
            "systolic": value + 1, "diastolic": value}  # fmt: skip
    sign = VITAL_SIGNS[key]
    flagged = any(p.key == key and "not possible" in p.message for p in check_vitals(values))
    assert flagged == (not sign.low <= value <= sign.high)
