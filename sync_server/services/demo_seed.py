"""A realistic, deterministic demo clinic: 3 sites, staff, patients with years of history.

Everything is generated from `random.Random(seed)` (ids too), with dates
relative to `today`: the same seed and day give the same records. The clinic:
one Organization, a main clinic and two satellites (each Location carries its
IANA time zone in the standard `timezone` extension), physicians and nurses
at each site (Practitioner + PractitionerRole), and patients who each belong
to one site and have encounters there every few months for several years:
vital signs (BP panel 85354-9, HR, temperature, SpO2, weight; LOINC + UCUM),
problems (SNOMED), medications (RxNorm), allergies, immunizations (CVX),
progress notes, and booked appointments today and in the next days. Every
record is written through the FHIR repository like any other write.
"""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from shared_models import fhir_constants as fc
from shared_models.vitals import vitals_observations
from sync_server.services.fhir_repository import FhirRepository, ResourceWrite

SITES = (
    ("Riverside Main Clinic", "Springfield", "America/New_York"),
    ("Northgate Satellite", "Shelbyville", "America/New_York"),
    ("Lakeview Satellite", "Lake City", "America/Chicago"),
)
GIVEN_F = ("Maria", "Aisha", "Sofia", "Grace", "Mei", "Olivia", "Fatima", "Elena", "Hannah", "Rosa")
GIVEN_M = ("James", "Omar", "Lucas", "Daniel", "Wei", "Mateo", "Samuel", "Noah", "Ibrahim", "Leo")
FAMILY = (
    "Alvarez", "Bennett", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ivanova",
    "Johnson", "Kowalski", "Larsen", "Mensah", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi",
)  # fmt: skip
PROBLEMS = (
    ("38341003", "Hypertensive disorder"),
    ("44054006", "Type 2 diabetes mellitus"),
    ("195967001", "Asthma"),
    ("55822004", "Hyperlipidemia"),
    ("35489007", "Depressive disorder"),
    ("399211009", "History of myocardial infarction"),
)
MEDICATIONS = (
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("861007", "metformin hydrochloride 500 MG Oral Tablet"),
    ("617312", "atorvastatin 20 MG Oral Tablet"),
    ("745679", "albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"),
    ("312938", "sertraline 50 MG Oral Tablet"),
)
ALLERGIES = (
    ("764146007", "Penicillin"),
    ("91935009", "Peanut"),
    ("111088007", "Latex"),
    ("387406002", "Sulfonamide"),
)
VACCINES = (("140", "Influenza, seasonal, injectable"), ("115", "Tdap"), ("208", "COVID-19 mRNA"))


@dataclass
class DemoClinic:
    """What was generated: ids a caller (the demo command, tests) may want to show."""

    organization_id: str
    location_ids: list[str]
    practitioner_ids: list[str]
    patient_ids: list[str]
    counts: dict[str, int] = field(default_factory=dict)


class _Generator:
    def __init__(self, seed: int, today: date) -> None:
        self.rng = random.Random(seed)
        self.today = today
        self.resources: list[dict[str, Any]] = []

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add(self, resource: dict[str, Any]) -> str:
        resource.setdefault("id", self.new_id())
        self.resources.append(resource)
        return str(resource["id"])

    def concept(self, system: str, code: str, display: str) -> dict[str, Any]:
        return {"coding": [{"system": system, "code": code, "display": display}], "text": display}

    def phone(self) -> str:
        return f"555-{self.rng.randint(100, 999)}-{self.rng.randint(1000, 9999)}"


def build_demo_clinic(
    seed: int = 42, patients: int = 40, *, today: date | None = None, years: int = 3
) -> tuple[DemoClinic, list[dict[str, Any]]]:
    """Generate the clinic's resources (nothing written yet)."""
    g = _Generator(seed, today or datetime.now(UTC).date())
    org = g.add(
        {"resourceType": "Organization", "name": "Riverside Health Network", "active": True}
    )
    locations, staff = [], []
    for index, (name, city, tz) in enumerate(SITES):
        loc = g.add(
            {
                "resourceType": "Location",
                "status": "active",
                "name": name,
                "extension": [{"url": fc.TIMEZONE_EXTENSION, "valueCode": tz}],
                "identifier": [{"system": "urn:ehr:location", "value": f"SITE-{index + 1}"}],
                "address": {"line": [f"{10 + index * 7} Main Street"], "city": city},
                "managingOrganization": {"reference": f"Organization/{org}"},
            }
        )
        locations.append((loc, tz))
        for role in ("doctor", "doctor", "nurse", "nurse"):
            staff.append((_practitioner(g, role, loc, org), role, loc))
    clinic = DemoClinic(org, [loc for loc, _ in locations], [p for p, _, _ in staff], [])
    for n in range(patients):
        loc, tz = locations[n % len(locations)]
        site_staff = [(p, r) for p, r, site in staff if site == loc]
        clinic.patient_ids.append(_patient_history(g, n, loc, ZoneInfo(tz), site_staff, years))
    for resource in g.resources:
        clinic.counts[resource["resourceType"]] = clinic.counts.get(resource["resourceType"], 0) + 1
    return clinic, g.resources


def _practitioner(g: _Generator, role: str, location: str, org: str) -> str:
    female = g.rng.random() < 0.5
    given = g.rng.choice(GIVEN_F if female else GIVEN_M)
    prefix = ["Dr."] if role == "doctor" else []
    pid = g.add(
        {
            "resourceType": "Practitioner",
            "active": True,
            "identifier": [{"system": fc.NPI, "value": str(g.rng.randint(10**9, 2 * 10**9))}],
            "name": [{"family": g.rng.choice(FAMILY), "given": [given], "prefix": prefix}],
            "gender": "female" if female else "male",
            "telecom": [{"system": "phone", "value": g.phone(), "use": "work"}],
        }
    )
    g.add(
        {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": {"reference": f"Practitioner/{pid}"},
            "organization": {"reference": f"Organization/{org}"},
            "location": [{"reference": f"Location/{location}"}],
            "code": [g.concept(fc.PRACTITIONER_ROLE, role, role.title())],
        }
    )
    return pid


def _patient_history(
    g: _Generator,
    n: int,
    location: str,
    tz: ZoneInfo,
    staff: list[tuple[str, str]],
    years: int,
) -> str:
    rng = g.rng
    female = rng.random() < 0.5
    birth = g.today - timedelta(days=rng.randint(18 * 365, 90 * 365))
    patient = g.add(
        {
            "resourceType": "Patient",
            "active": True,
            "identifier": [
                {"type": fc.MRN_TYPE, "system": fc.MRN_SYSTEM, "value": f"MRN{100000 + n}"}
            ],
            "name": [
                {
                    "use": "official",
                    "family": rng.choice(FAMILY),
                    "given": [rng.choice(GIVEN_F if female else GIVEN_M)],
                }
            ],
            "gender": "female" if female else "male",
            "birthDate": birth.isoformat(),
            "telecom": [{"system": "phone", "value": g.phone(), "use": "mobile"}],
            "address": [{"line": [f"{rng.randint(1, 999)} Elm Street"], "city": "Springfield"}],
        }
    )
    subject = {"reference": f"Patient/{patient}"}
    physicians = [p for p, r in staff if r == "doctor"]
    nurses = [p for p, r in staff if r == "nurse"]
    problems = rng.sample(PROBLEMS, rng.randint(1, 3))
    start = g.today - timedelta(days=365 * years)
    for code, display in problems:
        g.add(
            {
                "resourceType": "Condition",
                "subject": subject,
                "clinicalStatus": g.concept(fc.CONDITION_CLINICAL, "active", "Active"),
                "category": [g.concept(fc.CONDITION_CATEGORY, "problem-list-item", "Problem")],
                "code": g.concept(fc.SNOMED, code, display),
                "onsetDateTime": start.isoformat(),
            }
        )
    for code, display in rng.sample(MEDICATIONS, rng.randint(1, 3)):
        g.add(
            {
                "resourceType": "MedicationRequest",
                "status": "active",
                "intent": "order",
                "subject": subject,
                "medicationCodeableConcept": g.concept(fc.RXNORM, code, display),
                "authoredOn": start.isoformat(),
                "requester": {"reference": f"Practitioner/{rng.choice(physicians)}"},
                "dosageInstruction": [{"text": "Take as directed"}],
            }
        )
    for code, display in rng.sample(ALLERGIES, rng.randint(0, 2)):
        g.add(
            {
                "resourceType": "AllergyIntolerance",
                "patient": subject,
                "clinicalStatus": g.concept(fc.ALLERGY_CLINICAL, "active", "Active"),
                "verificationStatus": g.concept(fc.ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
                "code": g.concept(fc.SNOMED, code, display),
                "criticality": rng.choice(["low", "high"]),
            }
        )
    weight = rng.uniform(50, 110)
    visit = datetime.combine(start, time(9), tz)
    while visit.date() < g.today:
        visit += timedelta(days=rng.randint(60, 120), minutes=15 * rng.randint(0, 28))
        if visit.date() >= g.today:
            break
        _visit(g, subject, location, visit, rng.choice(physicians), rng.choice(nurses), weight)
        weight += rng.uniform(-1.5, 1.5)
    for code, display in VACCINES:
        g.add(
            {
                "resourceType": "Immunization",
                "status": "completed",
                "patient": subject,
                "vaccineCode": g.concept(fc.CVX, code, display),
                "occurrenceDateTime": (start + timedelta(days=rng.randint(0, 700))).isoformat(),
            }
        )
    day = g.today + timedelta(days=n % 5)
    slot = datetime.combine(day, time(8, 30), tz) + timedelta(minutes=20 * (n // 5 % 24))
    g.add(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "description": "Follow-up visit",
            "start": slot.isoformat(),
            "end": (slot + timedelta(minutes=20)).isoformat(),
            "participant": [
                {"actor": subject, "status": "accepted"},
                {
                    "actor": {"reference": f"Practitioner/{rng.choice(physicians)}"},
                    "status": "accepted",
                },
                {"actor": {"reference": f"Location/{location}"}, "status": "accepted"},
            ],
        }
    )
    return patient


def _visit(
    g: _Generator,
    subject: dict[str, str],
    location: str,
    when: datetime,
    physician: str,
    nurse: str,
    weight: float,
) -> None:
    rng = g.rng
    encounter = g.add(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": {"system": fc.ENCOUNTER_CLASS, "code": "AMB", "display": "ambulatory"},
            "subject": subject,
            "period": {
                "start": when.isoformat(),
                "end": (when + timedelta(minutes=30)).isoformat(),
            },
            "location": [{"location": {"reference": f"Location/{location}"}}],
            "participant": [{"individual": {"reference": f"Practitioner/{physician}"}}],
        }
    )
    readings = {
        "systolic": float(rng.randint(105, 165)),
        "diastolic": float(rng.randint(62, 95)),
        "heart_rate": float(rng.randint(55, 100)),
        "temperature": round(rng.uniform(36.2, 37.6), 1),
        "spo2": float(rng.randint(93, 100)),
        "weight": round(weight, 1),
    }
    patient_id = subject["reference"].split("/")[1]
    for observation in vitals_observations(
        patient_id,
        readings,
        when,
        performer=f"Practitioner/{nurse}",
        encounter=f"Encounter/{encounter}",
    ):
        observation["id"] = g.new_id()
        g.add(observation)
    text = (
        f"Follow-up visit. BP {readings['systolic']:.0f}/{readings['diastolic']:.0f}. "
        "Patient reports feeling well. Continue current medications. Return in 3 months."
    )
    g.add(
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "docStatus": "final",
            "type": g.concept(fc.LOINC, fc.PROGRESS_NOTE_LOINC, "Progress note"),
            "subject": subject,
            "date": when.isoformat(),
            "author": [{"reference": f"Practitioner/{physician}"}],
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": base64.b64encode(text.encode()).decode(),
                    }
                }
            ],
            "context": {"encounter": [{"reference": f"Encounter/{encounter}"}]},
        }
    )


def seed_demo(
    repo: FhirRepository,
    *,
    seed: int = 42,
    patients: int = 40,
    today: date | None = None,
    batch_size: int = 1000,
) -> DemoClinic:
    """Generate the demo clinic and write it through `repo` (caller commits)."""
    clinic, resources = build_demo_clinic(seed, patients, today=today)
    for start in range(0, len(resources), batch_size):
        chunk = resources[start : start + batch_size]
        repo.write_many([ResourceWrite(r["resourceType"], r["id"], r) for r in chunk])
    return clinic
