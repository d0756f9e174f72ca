"""Helpers of the scheduling tests: a two-site clinic from real sample data, HTTP clients.

Two Locations in different time zones (`loc-east` America/New_York, `loc-west`
America/Chicago), three Synthea practitioners with a Schedule each (two east,
one west), four Synthea patients cared for at `loc-east` (an Encounter there).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import keyring
import pytest
from desktop_store_helpers import FAST_KDF, PASSWORD, SyntheaPatient, enroll, synthea_resources
from identity_support import TestUser, bearer, login, make_user, system_repository
from keyrings.alt.file import PlaintextKeyring
from sqlalchemy.orm import Session

from desktop.services.workstation import Workstation
from shared_models.fhir_constants import TIMEZONE_EXTENSION
from shared_models.scheduling import ScheduleTemplate, slot_resource, slot_times

TESTS = Path(__file__).resolve().parent.parent


def server_fixtures() -> ModuleType:
    """`tests/server/conftest.py` as a module (its live-server fixtures are re-exported)."""
    name = "server_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "server" / "conftest.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


ZONES = {"loc-east": "America/New_York", "loc-west": "America/Chicago"}
_BULK = "fhir-synthea/bulk-ndjson-10-patients"
_BUNDLES = "fhir-synthea/bundles-2019"

#: Mon-Fri 08:00-12:00 in 20-minute slots with a 10:00-10:20 break.
WEEKDAY_TEMPLATE: dict[str, Any] = {
    "weekdays": [1, 2, 3, 4, 5],
    "start": "08:00",
    "end": "12:00",
    "slot_minutes": 20,
    "breaks": [["10:00", "10:20"]],
}


@dataclass
class SchedulingClinic:
    patients: list[str]
    practitioners: list[str]
    #: Schedule id per practitioner id.
    schedules: dict[str, str]
    #: Location id per schedule id.
    schedule_location: dict[str, str]


def location(location_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": location_id,
        "name": f"Clinic {location_id}",
        "status": "active",
        "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": ZONES[location_id]}],
    }


def next_monday(weeks_ahead: int = 1) -> date:
    today = date.today()
    return today + timedelta(days=7 * weeks_ahead - today.weekday())


def seed_scheduling_clinic(server: Any, shared_data: Path) -> SchedulingClinic:
    patients = [
        json.loads(line)
        for line in (shared_data / _BULK / "Patient.000.ndjson").read_text().splitlines()[:4]
    ]
    encounter = next(
        json.loads(line)
        for line in (shared_data / _BULK / "Encounter.000.ndjson").read_text().splitlines()
    )
    bundle = next((shared_data / _BUNDLES).glob("practitionerInformation*.json"))
    practitioners = [e["resource"] for e in json.loads(bundle.read_text())["entry"][:3]]
    writes: list[dict[str, Any]] = [location(loc) for loc in ZONES] + patients + practitioners
    for patient in patients:
        visit = copy.deepcopy(encounter)
        visit["id"] = str(uuid.uuid4())
        visit["subject"] = {"reference": f"Patient/{patient['id']}"}
        visit["location"] = [{"location": {"reference": "Location/loc-east"}}]
        writes.append(visit)
    schedules: dict[str, str] = {}
    schedule_location: dict[str, str] = {}
    for practitioner, loc in zip(practitioners, ("loc-east", "loc-east", "loc-west"), strict=True):
        schedule_id = f"sched-{practitioner['id'][:8]}"
        schedules[practitioner["id"]] = schedule_id
        schedule_location[schedule_id] = loc
        writes.append(
            {
                "resourceType": "Schedule",
                "id": schedule_id,
                "active": True,
                "actor": [
                    {"reference": f"Practitioner/{practitioner['id']}"},
                    {"reference": f"Location/{loc}"},
                ],
            }
        )
    with Session(server.engine) as session:
        repo = system_repository(session)
        for resource in writes:
            repo.update(resource["resourceType"], resource["id"], resource)
        session.commit()
    return SchedulingClinic(
        patients=[p["id"] for p in patients],
        practitioners=[p["id"] for p in practitioners],
        schedules=schedules,
        schedule_location=schedule_location,
    )


class SchedulingClient:
    """A signed-in user calling /scheduling and /fhir/R4 over real HTTP."""

    def __init__(self, server: Any, role: str, locations: list[str]) -> None:
        self.user = make_user(server, f"{role}.{uuid.uuid4().hex[:8]}", [role], locations)
        self.http = httpx.Client(base_url=server.url, timeout=60)
        self.http.headers.update(bearer(login(self.http, self.user)["access_token"]))

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.post(f"/scheduling{path}", json=body)

    def generate(self, schedule: str, first: date, last: date, **template: Any) -> dict[str, Any]:
        body = {
            "schedule": f"Schedule/{schedule}",
            "template": {**WEEKDAY_TEMPLATE, **template},
            "from": first.isoformat(),
            "to": last.isoformat(),
        }
        response = self.post("/slots/generate", body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def free_slots(self, **params: Any) -> list[dict[str, Any]]:
        response = self.http.get("/scheduling/free-slots", params=params)
        assert response.status_code == 200, response.text
        return [e["resource"] for e in response.json()["entry"]]

    def fhir(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"/fhir/R4/{path}", params=params)

    def close(self) -> None:
        self.http.close()


def local_clinic(
    shared_data: Path,
    first_day: date,
    *,
    days: int = 7,
    practitioners: int = 2,
    first_practitioner: int = 0,
    weekdays: frozenset[int] = frozenset(range(1, 8)),
    zone: str = "America/Chicago",
    location_id: str = "loc-main",
) -> tuple[list[dict[str, Any]], list[str]]:
    """A workstation cache's scheduling data: a Location in `zone`, Synthea practitioners
    with a Schedule each, and free 20-minute slots 08:00-12:00 on `weekdays` from `first_day`.

    Returns (resources, practitioner ids)."""
    bundle = next((shared_data / _BUNDLES).glob("practitionerInformation*.json"))
    entries = json.loads(bundle.read_text())["entry"]
    people = [e["resource"] for e in entries[first_practitioner:][:practitioners]]
    place = {
        "resourceType": "Location",
        "id": location_id,
        "name": f"Clinic {location_id}",
        "status": "active",
        "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": zone}],
    }
    out: list[dict[str, Any]] = [place, *people]
    template = ScheduleTemplate(weekdays, time(8), time(12), 20)
    last = first_day + timedelta(days=days - 1)
    for person in people:
        schedule_id = f"sched-{location_id}-{person['id'][:8]}"
        actors = [f"Practitioner/{person['id']}", f"Location/{location_id}"]
        out.append(
            {
                "resourceType": "Schedule",
                "id": schedule_id,
                "active": True,
                "actor": [{"reference": a} for a in actors],
            }
        )
        out += [
            slot_resource(schedule_id, start, end)
            for start, end in slot_times(template, first_day, last, ZoneInfo(zone))
        ]
    return out, [p["id"] for p in people]


@pytest.fixture(scope="module")
def module_keychain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`keyring` writes to a file of this module, never to the real keychain."""
    path = tmp_path_factory.mktemp("xdg") / "python_keyring" / "keyring_pass.cfg"
    path.parent.mkdir(parents=True)
    backend = PlaintextKeyring()
    backend.file_path = str(path)
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield path
    keyring.set_keyring(previous)


def workstation(profile: Path, url: str, user: TestUser) -> Workstation:
    """A workstation profile signed in online (creates the profile on first use)."""
    ws = Workstation.open(profile, url, kdf=FAST_KDF)
    try:
        ws.sign_in_online(user.username, user.password, user.next_code())
    except BaseException:
        ws.close()
        raise
    return ws


USER = "desk.joy"
LOCAL_ZONE = ZoneInfo("America/Chicago")


def booked_appointment(patient: str, practitioner: str, slot: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": str(uuid.uuid4()),
        "status": "booked",
        "description": "Diabetes review",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "start": slot["start"],
        "end": slot["end"],
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{practitioner}"}, "status": "accepted"},
            {"actor": {"reference": "Location/loc-main"}, "status": "accepted"},
        ],
    }


@dataclass
class LocalProfile:
    path: Path
    patients: list[SyntheaPatient]
    practitioners: list[str]


@pytest.fixture(scope="module")
def local_profile(
    shared_data: Path, tmp_path_factory: pytest.TempPathFactory, module_keychain: Path
) -> LocalProfile:
    """An enrolled profile caching a clinic in America/Chicago (`local_clinic`, 7 days from
    today) and 2 Synthea patients booked with the first practitioner at 09:00 and 10:00 today."""
    today = datetime.now(LOCAL_ZONE).date()
    clinic, practitioners = local_clinic(shared_data, today, days=7)
    patients_resources, patients = synthea_resources(shared_data, 2)
    slots = [r for r in clinic if r["resourceType"] == "Slot"]
    mine = [s for s in slots if practitioners[0][:8] in s["schedule"]["reference"]]
    booked = [mine[3], mine[6]]
    for slot in booked:
        slot["status"] = "busy"
    visits = [
        booked_appointment(p.id, practitioners[0], s) for p, s in zip(patients, booked, strict=True)
    ]
    path = tmp_path_factory.mktemp("schedule-profile") / "profile"
    enroll(path, USER, resources=clinic + patients_resources + visits)
    return LocalProfile(path, patients, practitioners)


def offline_copy(profile: LocalProfile, tmp_path: Path) -> Workstation:
    """A copy of the profile this test may change, signed in offline."""
    copy = tmp_path / "profile"
    shutil.copytree(profile.path, copy)
    ws = Workstation.open(copy, None, kdf=FAST_KDF)
    ws.sign_in_offline(USER, PASSWORD)
    return ws
