"""Per-type merge policy and risk routing, on real FHIR examples from the shared data."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from shared_models.merge_policy import (
    APPEND_ONLY,
    CONCURRENT_EDIT,
    DELETE_VS_UPDATE,
    NEVER_DROPPED,
    SIGNED_NOTE,
    decide_change,
)
from shared_models.risk import ReviewRoute, classify_conflict, may_resolve


def example(shared_data: Path, name: str) -> dict[str, Any]:
    path = shared_data / "fhir-examples" / "r4-examples" / name
    return dict(json.loads(path.read_text()))


def decide(kind: str, client: Any, base: Any, current: Any, base_v: int = 1, cur_v: int = 2) -> Any:
    return decide_change(
        kind, client=client, base_version=base_v, current_version=cur_v, current=current, base=base
    )


def test_new_resource_is_applied() -> None:
    patient = {"resourceType": "Patient", "id": "p"}
    got = decide_change(
        "Patient", client=patient, base_version=None, current_version=None, current=None, base=None
    )
    assert (got.status, got.write, got.resource) == ("applied", True, patient)


def test_fast_forward_applies_and_resend_is_a_no_op(shared_data: Path) -> None:
    patient = example(shared_data, "Patient-example.json")
    edited = {**patient, "gender": "female"}
    got = decide("Patient", edited, patient, patient, 2, 2)
    assert (got.status, got.write, got.resource) == ("applied", True, edited)
    again = decide("Patient", edited, patient, {**edited, "meta": {"versionId": "3"}}, 2, 3)
    assert (again.status, again.write) == ("applied", False)


def test_disjoint_edits_merge(shared_data: Path) -> None:
    base = example(shared_data, "Patient-example.json")
    server = {**base, "gender": "female"}
    client = {**base, "birthDate": "1975-01-01"}
    got = decide("Patient", client, base, server)
    assert got.status == "merged"
    assert got.resource is not None
    assert (got.resource["gender"], got.resource["birthDate"]) == ("female", "1975-01-01")


def test_demographic_clash_is_merged_automatically_clinical_clash_is_a_conflict(
    shared_data: Path,
) -> None:
    base = example(shared_data, "Patient-example.json")
    server, client = copy.deepcopy(base), copy.deepcopy(base)
    server["address"][0]["city"] = "Server City"
    client["address"][0]["city"] = "Client City"
    server["telecom"][1]["use"], client["telecom"][1]["use"] = "home", "mobile"
    got = decide("Patient", client, base, server)
    assert got.status == "merged" and got.resource is not None
    # addresses merge by content: both edited versions are kept, nothing is lost
    assert [a["city"] for a in got.resource["address"]] == ["Server City", "Client City"]
    # the same phone number's `use` clashed: demographics, so the client's edit wins
    assert got.resource["telecom"][1]["use"] == "mobile"
    assert got.paths == ("Patient.telecom[1].use",)

    server["birthDate"], client["birthDate"] = "1970-01-01", "1971-01-01"
    got = decide("Patient", client, base, server)
    assert (got.status, got.rule, got.route) == ("conflict", CONCURRENT_EDIT, "registration")
    assert "Patient.birthDate" in got.paths


def test_medication_conflict_goes_to_a_prescriber(shared_data: Path) -> None:
    base = example(shared_data, "MedicationRequest-medrx0302.json")
    server = {**base, "status": "on-hold"}
    client = {**base, "status": "stopped"}
    got = decide("MedicationRequest", client, base, server)
    assert (got.status, got.route) == ("conflict", ReviewRoute.PRESCRIBER)
    assert may_resolve(ReviewRoute.PRESCRIBER, {"physician"})
    assert not may_resolve(ReviewRoute.PRESCRIBER, {"nurse", "front_desk"})


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("DocumentReference-example.json", "DocumentReference"),
        ("Composition-example.json", "Composition"),
    ],
)
def test_signed_note_is_immutable(shared_data: Path, name: str, kind: str) -> None:
    note = example(shared_data, name)
    note["docStatus" if kind == "DocumentReference" else "status"] = "final"
    edited = {**note, "description": "changed after signing"}
    for client in (edited, None):
        got = decide(kind, client, note, note, 1, 1)
        assert (got.status, got.rule, got.write) == ("rejected", SIGNED_NOTE, False)
        assert got.reason is not None and "addendum" in got.reason


def test_observations_are_append_only(shared_data: Path) -> None:
    obs = example(shared_data, "Observation-example.json")
    for client in ({**obs, "status": "amended"}, None):
        got = decide("Observation", client, obs, obs, 1, 1)
        assert (got.status, got.rule) == ("rejected", APPEND_ONLY)
    created = decide_change(
        "Observation", client=obs, base_version=None, current_version=None, current=None, base=None
    )
    assert created.status == "applied" and created.write


def test_delete_against_update_is_a_conflict(shared_data: Path) -> None:
    base = example(shared_data, "Patient-example.json")
    server = {**base, "gender": "female"}
    got = decide("Patient", None, base, server)
    assert (got.status, got.rule) == ("conflict", DELETE_VS_UPDATE)
    # and the other way round: deleted on the server, edited on the workstation
    got = decide("Patient", {**base, "gender": "other"}, base, None)
    assert (got.status, got.rule) == ("conflict", DELETE_VS_UPDATE)
    # a delete on an unchanged resource is applied
    got = decide("Patient", None, base, base, 2, 2)
    assert (got.status, got.write, got.delete) == ("applied", True, True)


def test_allergy_is_never_retired_by_a_merge(shared_data: Path) -> None:
    base = example(shared_data, "AllergyIntolerance-example.json")
    server = {**base, "criticality": "low"}
    client = copy.deepcopy(base)
    client["clinicalStatus"]["coding"][0]["code"] = "inactive"
    got = decide("AllergyIntolerance", client, base, server)
    assert (got.status, got.rule, got.route) == ("conflict", NEVER_DROPPED, ReviewRoute.PRESCRIBER)
    # the same retirement without a concurrent edit is an ordinary update
    got = decide("AllergyIntolerance", client, base, base, 1, 1)
    assert got.status == "applied"


def test_routes_by_type() -> None:
    assert classify_conflict("AllergyIntolerance", ["AllergyIntolerance.code"]) == "prescriber"
    assert classify_conflict("Condition", ["Condition.code"]) == "clinician"
    assert classify_conflict("Appointment", ["Appointment.start"]) == "registration"
    assert classify_conflict("Patient", ["Patient.telecom[0].use"]) == "auto_merge"
    assert classify_conflict("Patient", ["Patient.telecom[0]", "Patient.gender"]) == "registration"
