"""The Workstation facade on a real encrypted profile: offline sign-in, search, charts, saves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from desktop_store_helpers import FAST_KDF, PASSWORD, SyntheaPatient, enroll, synthea_resources

from desktop.services.workstation import Workstation
from desktop.store.errors import SessionLocked
from shared_models.errors import ValidationFailed

OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ALLERGY_STATUS = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"


@pytest.fixture(scope="module")
def synthea(shared_data: Path) -> tuple[list[dict[str, Any]], list[SyntheaPatient]]:
    return synthea_resources(shared_data, 4)


@pytest.fixture
def ws(tmp_path: Path, synthea: tuple[list[dict[str, Any]], list[SyntheaPatient]]) -> Workstation:
    profile = tmp_path / "profile"
    enroll(profile, resources=synthea[0])
    workstation = Workstation.open(profile, None, kdf=FAST_KDF)
    workstation.sign_in_offline("nurse.joy", PASSWORD)
    yield workstation
    workstation.close()


def test_search_by_name_prefix_mrn_and_birth_date(ws: Workstation, synthea) -> None:
    _resources, patients = synthea
    for patient in patients:
        by_name = ws.search_patients(f"{patient.family[:3]} {patient.given[:2]}")
        assert patient.id in [p.patient_id for p in by_name]
        by_mrn = ws.search_patients(patient.mrn)
        assert by_mrn[0].patient_id == patient.id and by_mrn[0].mrn == patient.mrn
        by_birth = ws.search_patients(patient.birth_date)
        assert patient.id in [p.patient_id for p in by_birth]
        assert all(p.birth_date == patient.birth_date for p in by_birth)
    assert ws.search_patients("zzzqqq") == []
    assert ws.search_patients("   ") == []


def test_chart_matches_the_bundle(ws: Workstation, synthea) -> None:
    resources, patients = synthea
    now = datetime.now(UTC)
    for patient in patients:
        mine = [r for r in resources if _subject(r) == patient.id]
        chart = ws.load_chart(patient.id)
        assert chart.banner.mrn == patient.mrn
        assert chart.banner.name == f"{patient.family}, {patient.given}"
        born = datetime.fromisoformat(patient.birth_date).date()
        assert chart.banner.age_years == now.year - born.year - (
            (now.month, now.day) < (born.month, born.day)
        )
        active_conditions = {
            r["id"]
            for r in mine
            if r["resourceType"] == "Condition"
            and r.get("clinicalStatus", {}).get("coding", [{}])[0].get("code")
            not in ("resolved", "inactive", "remission")
        }
        assert {p.id for p in chart.problems} == active_conditions
        active_meds = {
            r["id"]
            for r in mine
            if r["resourceType"] == "MedicationRequest" and r["status"] == "active"
        }
        assert {m.id for m in chart.medications} == active_meds
        cutoff = now - timedelta(days=730)
        vitals = {
            r["id"]
            for r in mine
            if r["resourceType"] == "Observation"
            and any(
                c["code"] == "vital-signs" for cat in r.get("category", []) for c in cat["coding"]
            )
            and datetime.fromisoformat(r["effectiveDateTime"]) >= cutoff
        }
        assert {v.observation_id for v in chart.vitals} == vitals


def _subject(resource: dict[str, Any]) -> str | None:
    for field in ("subject", "patient"):
        ref = resource.get(field, {}).get("reference", "")
        if ref.startswith("Patient/"):
            return ref.split("/")[1]
    return resource["id"] if resource["resourceType"] == "Patient" else None


def test_vitals_of_last_two_years_with_bp_components(ws: Workstation, synthea) -> None:
    _resources, patients = synthea
    patient = patients[0]
    now = datetime.now(UTC)
    bp = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "subject": {"reference": f"Patient/{patient.id}"},
        "effectiveDateTime": (now - timedelta(days=1)).isoformat(),
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
             "valueQuantity": {"value": 128, "unit": "mm[Hg]"}},
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
             "valueQuantity": {"value": 84, "unit": "mm[Hg]"}},
        ],
    }  # fmt: skip
    old = dict(bp, effectiveDateTime=(now - timedelta(days=800)).isoformat())
    ws.save_resource(old, None)
    changes = ws.save_resource(bp, None)
    assert changes.kinds == {"vitals", "pending"} and changes.patient_id == patient.id
    chart = ws.load_chart(patient.id)
    newest = chart.vitals[0]
    assert newest.observation_id == changes.resource_id and newest.pending
    assert [(v.code, v.value) for v in newest.values] == [("8480-6", 128.0), ("8462-4", 84.0)]
    assert newest.values[0].label == "Systolic BP"
    assert all(v.effective >= now - timedelta(days=730) for v in chart.vitals)
    assert changes.resource_id in chart.pending_ids


def test_save_writes_resource_and_outbox_together(ws: Workstation, synthea) -> None:
    _resources, patients = synthea
    patient_id = patients[1].id
    allergy = {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": ALLERGY_STATUS, "code": "active"}]},
        "code": {"text": "Penicillin"},
        "patient": {"reference": f"Patient/{patient_id}"},
        "criticality": "high",
    }  # fmt: skip
    changes = ws.save_resource(allergy, None)
    pending = ws.list_pending_changes()
    assert [(p.change_id, p.id, p.op, p.base_version) for p in pending] == [
        (changes.change_id, changes.resource_id, "upsert", None)
    ]
    assert orjson.loads(pending[0].json or b"")["code"]["text"] == "Penicillin"
    chart = ws.load_chart(patient_id)
    assert "Penicillin" in chart.banner.allergies
    assert chart.allergies[0].pending
    # An edit of a cached resource keeps the base version it was made on.
    condition = next(p for p in chart.problems) if chart.problems else None
    if condition is not None:
        body, version = ws.get_resource("Condition", condition.id)
        body["note"] = [{"text": "reviewed"}]
        ws.save_resource(body, version)
        assert ws.list_pending_changes()[-1].base_version == version == 1
    assert ws.status().pending == len(ws.list_pending_changes())


def test_invalid_resource_is_refused_and_nothing_written(ws: Workstation, synthea) -> None:
    bad = {
        "resourceType": "Observation",
        "code": {"text": "Heart rate"},
        "valueQuantity": {"value": "fast"},
    }
    with pytest.raises(ValidationFailed) as err:
        ws.save_resource(bad, None)
    assert any("valueQuantity.value" in expr for expr, _ in err.value.issues)
    assert ws.list_pending_changes() == []
    assert ws.status().pending == 0


def test_lock_drops_the_key_and_unlock_needs_the_password(ws: Workstation, synthea) -> None:
    patient = synthea[1][0]
    ws.lock()
    assert ws.is_locked
    with pytest.raises(SessionLocked):
        ws.search_patients(patient.family)
    with pytest.raises(Exception) as wrong:
        ws.unlock("not the password")
    assert "password" in wrong.value.user_message.lower()
    assert ws.is_locked
    ws.unlock(PASSWORD)
    assert ws.search_patients(patient.mrn)[0].patient_id == patient.id


def test_idle_lock_after_policy_timeout(tmp_path: Path, synthea) -> None:
    profile = tmp_path / "p"
    enroll(profile, idle_minutes=0, resources=synthea[0][:50])
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        ws.sign_in_offline("nurse.joy", PASSWORD)
        assert not ws.is_locked
        assert ws.lock_if_idle() is True
        assert ws.is_locked and ws.status().locked
