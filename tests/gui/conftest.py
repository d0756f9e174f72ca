"""GUI test fixtures: real Synthea vital readings, shaped as the chart view model carries them."""

from __future__ import annotations

import json
import random
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

from desktop.config import resources_dir
from desktop.services.chart import VitalReading, VitalValue
from desktop.services.notes import NoteTemplate, load_templates, new_draft, sign
from desktop.services.workstation import Workstation
from desktop.ui.context import UiContext
from shared_models.fhir_constants import LOINC
from shared_models.vitals import VITAL_SIGNS, vital_key_for_loinc, vitals_observations


def synthea_readings(shared_data: Path) -> list[VitalReading]:
    """Every vital-sign Observation of the Synthea bundles, newest first."""
    readings: list[VitalReading] = []
    for path in sorted((shared_data / "fhir-synthea" / "bundles-2019").glob("[A-Z]*.json")):
        for entry in json.loads(path.read_text())["entry"]:
            reading = _reading(entry["resource"])
            if reading:
                readings.append(reading)
    return sorted(readings, key=lambda r: r.effective, reverse=True)


def _value(part: dict) -> VitalValue | None:
    codes = [c["code"] for c in part["code"].get("coding", []) if c.get("system") == LOINC]
    quantity = part.get("valueQuantity")
    key = next((vital_key_for_loinc(c) for c in codes if vital_key_for_loinc(c)), None)
    if not key or not quantity:
        return None
    sign = VITAL_SIGNS[key]
    return VitalValue(sign.loinc, sign.label, float(quantity["value"]), sign.unit_label)


def _reading(resource: dict) -> VitalReading | None:
    if resource["resourceType"] != "Observation" or "effectiveDateTime" not in resource:
        return None
    values = [v for v in map(_value, [resource, *resource.get("component", [])]) if v]
    if not values:
        return None
    return VitalReading(
        observation_id=resource["id"],
        code=resource["code"]["coding"][0]["code"],
        label=resource["code"].get("text", ""),
        effective=datetime.fromisoformat(resource["effectiveDateTime"]),
        values=tuple(values),
    )


@pytest.fixture(scope="session")
def readings(shared_data: Path) -> list[VitalReading]:
    return synthea_readings(shared_data)


@pytest.fixture
def show_active(qtbot):
    """Show a widget as the active window: shortcuts and focus behave as for a user."""

    def show(widget) -> None:
        qtbot.addWidget(widget)
        widget.show()
        qtbot.waitExposed(widget)
        widget.activateWindow()
        qtbot.waitUntil(widget.isActiveWindow)

    return show


# -- a real encrypted profile with real (Synthea) patients -----------------------------

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "desktop"))
from desktop_store_helpers import (  # noqa: E402  (the store tests' enrolment helpers)
    FAST_KDF,
    PASSWORD,
    SyntheaPatient,
    enroll,
    synthea_resources,
)

USERNAME = "nurse.joy"
LOCATION = "loc-main"


@pytest.fixture(scope="session")
def password() -> str:
    """The demo profile user's password."""
    return PASSWORD


@pytest.fixture(scope="session")
def gui_keychain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`keyring` writes to a file under the session's temp folder, never the real keychain."""
    path = tmp_path_factory.mktemp("keychain") / "keyring.cfg"
    backend = PlaintextKeyring()
    backend.file_path = str(path)  # type: ignore[misc]
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield path
    keyring.set_keyring(previous)


def recent_vitals(patient_id: str, seed: int, count: int = 24) -> list[dict]:
    """A reading every ~30 days over the last two years (Synthea's stop in 2019)."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    out: list[dict] = []
    weight = rng.uniform(55, 95)
    for n in range(count):
        when = now - timedelta(days=30 * n + 1, hours=rng.randint(0, 6))
        values = {
            "systolic": float(rng.randint(108, 150)),
            "diastolic": float(rng.randint(64, 92)),
            "heart_rate": float(rng.randint(58, 96)),
            "temperature": round(rng.uniform(36.3, 37.6), 1),
            "spo2": float(rng.randint(94, 99)),
            "weight": round(weight + rng.uniform(-1.5, 1.5), 1),
        }
        out += vitals_observations(patient_id, values, when)
    return out


def todays_appointment(patient_id: str, hour: int, reason: str, status: str = "booked") -> dict:
    start = datetime.now().astimezone().replace(hour=hour, minute=0, second=0, microsecond=0)
    return {
        "resourceType": "Appointment",
        "id": str(uuid.uuid4()),
        "status": status,
        "description": reason,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=20)).isoformat(),
        "participant": [
            {"actor": {"reference": f"Patient/{patient_id}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{LOCATION}"}, "status": "accepted"},
        ],
    }


def signed_note(patient_id: str, template: NoteTemplate, days_ago: int) -> dict:
    text = template.body.replace("Subjective:\n", "Subjective:\nNo complaints.\n", 1)
    note = sign(new_draft(patient_id, template, text), text)
    when = datetime.now(UTC) - timedelta(days=days_ago)
    return note | {"date": when.isoformat(timespec="seconds")}


@dataclass
class DemoProfile:
    path: Path
    patients: list[SyntheaPatient]


REASONS = ("Diabetes review", "Blood pressure check", "Follow-up after infection",
           "Annual physical", "Wound dressing")  # fmt: skip


@pytest.fixture(scope="session")
def demo_profile(
    shared_data: Path, gui_keychain: Path, tmp_path_factory: pytest.TempPathFactory
) -> DemoProfile:
    """An enrolled profile caching 5 Synthea patients, recent vitals and today's clinic."""
    resources, patients = synthea_resources(shared_data, 5)
    templates = {t.key: t for t in load_templates(resources_dir() / "templates")}
    for n, patient in enumerate(patients):
        resources += recent_vitals(patient.id, seed=n)
        resources.append(signed_note(patient.id, templates["soap_progress_note"], days_ago=30))
        resources.append(todays_appointment(patient.id, 9 + n, REASONS[n % len(REASONS)]))
    path = tmp_path_factory.mktemp("profile") / "profile"
    enroll(path, USERNAME, resources=resources)
    return DemoProfile(path, patients)


@pytest.fixture
def fresh_profile(demo_profile: DemoProfile, tmp_path: Path) -> DemoProfile:
    """A copy of the demo profile this test may change (same keychain entry)."""
    target = tmp_path / "profile"
    shutil.copytree(demo_profile.path, target)
    return DemoProfile(target, demo_profile.patients)


@pytest.fixture
def workstation(fresh_profile: DemoProfile) -> Iterator[Workstation]:
    ws = Workstation.open(fresh_profile.path, None, kdf=FAST_KDF)
    yield ws
    ws.close()


@pytest.fixture
def ui(qtbot, workstation: Workstation) -> Iterator[UiContext]:
    ctx = UiContext.create(workstation)
    yield ctx
    ctx.shutdown()
