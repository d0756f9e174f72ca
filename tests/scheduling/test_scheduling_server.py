"""Server scheduling over real HTTP and PostgreSQL: slots, booking, status changes, search."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from identity_support import audit_rows, system_repository
from scheduling_support import SchedulingClient, SchedulingClinic, next_monday
from sqlalchemy import text
from sqlalchemy.orm import Session

from shared_models.scheduling import SlotUnavailable
from sync_server.services import scheduling


@pytest.fixture(scope="module")
def desk(secure_server: Any, clinic: SchedulingClinic) -> Iterator[SchedulingClient]:
    client = SchedulingClient(secure_server, "front_desk", ["loc-east", "loc-west"])
    first = next_monday(2)
    for schedule in clinic.schedules.values():
        client.generate(schedule, first, first + timedelta(days=13))
    yield client
    client.close()


def _db(server: Any, sql: str, **params: Any) -> list[Any]:
    with server.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def _slot(server: Any, slot_id: str) -> tuple[int, dict[str, Any]]:
    rows = _db(
        server,
        "SELECT version_id, resource FROM resources WHERE resource_type = 'Slot' AND id = :i",
        i=slot_id,
    )
    return rows[0][0], rows[0][1]


def _first_free(
    desk: SchedulingClient, clinic: SchedulingClinic, index: int = 0, **kw: Any
) -> dict[str, Any]:
    start = datetime.combine(next_monday(2), datetime.min.time(), UTC).isoformat()
    practitioner = clinic.practitioners[index]
    return desk.free_slots(practitioner=f"Practitioner/{practitioner}", start=start, **kw)[0]


def test_generate_is_idempotent_and_uses_the_location_zone(
    secure_server: Any, desk: SchedulingClient, clinic: SchedulingClinic
) -> None:
    first = next_monday(2)
    west = clinic.schedules[clinic.practitioners[2]]
    again = desk.generate(west, first, first + timedelta(days=13))
    assert again == {"created": 0, "existing": 2 * 5 * 11}
    start = datetime.combine(first, datetime.min.time(), UTC).isoformat()
    slots = desk.free_slots(location="Location/loc-west", start=start, count=3)
    assert [s["start"][11:16] for s in slots] == ["08:00", "08:20", "08:40"]
    offset = datetime.fromisoformat(slots[0]["start"]).utcoffset()
    assert offset in (timedelta(hours=-6), timedelta(hours=-5))  # Chicago, standard or daylight


def test_dst_change_day_slots_carry_the_new_offset(
    secure_server: Any, desk: SchedulingClient, clinic: SchedulingClinic
) -> None:
    schedule = clinic.schedules[clinic.practitioners[0]]  # New York
    answer = desk.generate(
        schedule, date(2027, 3, 13), date(2027, 3, 15), weekdays=[1, 6, 7], breaks=[]
    )
    assert answer["created"] == 3 * 12
    rows = _db(
        secure_server,
        "SELECT resource->>'start' FROM resources WHERE resource_type = 'Slot'"
        " AND resource->>'start' LIKE '2027-03-1_T08:00%' AND resource->'schedule'->>'reference'"
        " = :s ORDER BY 1",
        s=f"Schedule/{schedule}",
    )
    assert [r[0] for r in rows] == [
        "2027-03-13T08:00:00-05:00",
        "2027-03-14T08:00:00-04:00",
        "2027-03-15T08:00:00-04:00",
    ]


def test_free_slot_search_by_practitioner_location_and_chained_fhir_search(
    desk: SchedulingClient, clinic: SchedulingClinic
) -> None:
    first = datetime.combine(next_monday(2), datetime.min.time(), UTC)
    start, end = first.isoformat(), (first + timedelta(days=14)).isoformat()
    east = desk.free_slots(location="Location/loc-east", start=start, end=end, count=500)
    mine = desk.free_slots(
        practitioner=f"Practitioner/{clinic.practitioners[0]}", start=start, end=end, count=500
    )
    assert len(mine) == 10 * 11 and len(east) == 2 * 10 * 11
    assert {s["schedule"]["reference"] for s in east} == {
        f"Schedule/{clinic.schedules[p]}" for p in clinic.practitioners[:2]
    }
    assert [s["start"] for s in east] == sorted(s["start"] for s in east)
    fhir = desk.fhir(
        "Slot",
        **{
            "schedule.actor": f"Practitioner/{clinic.practitioners[0]}",
            "start": f"ge{start[:10]}",
            "status": "free",
            "_count": "1000",
        },
    )
    assert fhir.status_code == 200, fhir.text
    assert {e["resource"]["id"] for e in fhir.json()["entry"]} >= {s["id"] for s in mine}
    assert all(e["resource"]["status"] == "free" for e in fhir.json()["entry"])


def test_book_marks_the_slot_busy_and_a_second_booking_gets_alternatives(
    secure_server: Any, desk: SchedulingClient, clinic: SchedulingClinic
) -> None:
    slot = _first_free(desk, clinic)
    response = desk.post(
        "/book",
        {
            "slot": slot["id"],
            "patient": f"Patient/{clinic.patients[0]}",
            "description": "Annual check-up",
        },
    )
    assert response.status_code == 201, response.text
    appointment = response.json()
    assert appointment["status"] == "booked" and appointment["start"] == slot["start"]
    actors = {p["actor"]["reference"] for p in appointment["participant"]}
    assert actors == {
        f"Patient/{clinic.patients[0]}",
        f"Practitioner/{clinic.practitioners[0]}",
        "Location/loc-east",
    }
    version, stored_slot = _slot(secure_server, slot["id"])
    assert stored_slot["status"] == "busy" and version == 2

    again = desk.post("/book", {"slot": slot["id"], "patient": f"Patient/{clinic.patients[1]}"})
    assert again.status_code == 409
    outcome = again.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "already booked" in outcome["issue"][0]["diagnostics"]
    alternatives = outcome["contained"]
    assert len(alternatives) == 3 and slot["id"] not in {a["id"] for a in alternatives}
    assert all(a["status"] == "free" for a in alternatives)
    refusals = audit_rows(
        secure_server, action="create", outcome="failure", resource_type="Appointment"
    )
    assert any(r["detail"]["error"] == "SlotUnavailable" for r in refusals)
    booked = _db(
        secure_server, "SELECT appointment_id FROM slot_bookings WHERE slot_id = :s", s=slot["id"]
    )
    assert [r[0] for r in booked] == [appointment["id"]]
    rebook = desk.post(
        "/book", {"slot": alternatives[0]["id"], "patient": f"Patient/{clinic.patients[1]}"}
    )
    assert rebook.status_code == 201


def test_the_database_refuses_a_double_booking_from_any_writer(
    secure_server: Any, desk: SchedulingClient, clinic: SchedulingClinic
) -> None:
    slot = _first_free(desk, clinic, 1)
    with Session(secure_server.engine) as session:
        repo = system_repository(session)
        scheduling.book(repo=repo, slot_id=slot["id"], patient_id=clinic.patients[2])
        session.commit()
    twin = {
        "resourceType": "Appointment",
        "id": "twin-booking",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{clinic.patients[3]}"}, "status": "accepted"}
        ],
    }
    with Session(secure_server.engine) as session:
        repo = system_repository(session)
        with pytest.raises(SlotUnavailable):
            repo.update("Appointment", "twin-booking", twin)
        session.commit()
    assert _db(secure_server, "SELECT 1 FROM resources WHERE id = 'twin-booking'") == []
    # Cancelled appointments hold no slot: the same write with status cancelled is fine.
    with Session(secure_server.engine) as session:
        system_repository(session).update(
            "Appointment", "twin-booking", {**twin, "status": "cancelled"}
        )
        session.commit()


def _appointment(
    desk: SchedulingClient, clinic: SchedulingClinic, patient: int = 0
) -> dict[str, Any]:
    slot = _first_free(desk, clinic)
    response = desk.post(
        "/book", {"slot": slot["id"], "patient": f"Patient/{clinic.patients[patient]}"}
    )
    assert response.status_code == 201, response.text
    appointment: dict[str, Any] = response.json()
    return appointment


def test_reschedule_frees_the_old_slot_and_keeps_history(
    secure_server: Any, desk: SchedulingClient, clinic: SchedulingClinic
) -> None:
    appointment = _appointment(desk, clinic)
    old_slot = appointment["slot"][0]["reference"].removeprefix("Slot/")
    target = _first_free(desk, clinic, 2)  # another practitioner, at the other site
    moved = desk.post("/reschedule", {"appointment": appointment["id"], "slot": target["id"]})
    assert moved.status_code == 200, moved.text
    body = moved.json()
    assert body["meta"]["versionId"] == "2" and body["start"] == target["start"]
    assert "Location/loc-west" in {p["actor"]["reference"] for p in body["participant"]}
    assert _slot(secure_server, old_slot)[1]["status"] == "free"
    assert _slot(secure_server, target["id"])[1]["status"] == "busy"
    history = desk.fhir(f"Appointment/{appointment['id']}/_history")
    assert history.status_code == 200
    starts = [e["resource"]["start"] for e in history.json()["entry"]]
    assert starts == [target["start"], appointment["start"]]


def test_status_changes_cancel_check_in_no_show_fulfil(
    secure_server: Any, desk: SchedulingClient, clinic: SchedulingClinic
) -> None:
    visit = _appointment(desk, clinic)
    arrived = desk.post("/check-in", {"appointment": visit["id"]})
    assert arrived.status_code == 200 and arrived.json()["status"] == "arrived"
    assert desk.post("/fulfil", {"appointment": visit["id"]}).json()["status"] == "fulfilled"
    refused = desk.post("/cancel", {"appointment": visit["id"], "reason": "too late"})
    assert refused.status_code == 400
    assert refused.json()["resourceType"] == "OperationOutcome"

    missed = _appointment(desk, clinic, 1)
    assert desk.post("/no-show", {"appointment": missed["id"]}).json()["status"] == "noshow"

    cancelled_visit = _appointment(desk, clinic, 2)
    slot_id = cancelled_visit["slot"][0]["reference"].removeprefix("Slot/")
    no_reason = desk.post("/cancel", {"appointment": cancelled_visit["id"]})
    assert no_reason.status_code == 400 and _slot(secure_server, slot_id)[1]["status"] == "busy"
    cancelled = desk.post(
        "/cancel", {"appointment": cancelled_visit["id"], "reason": "Patient ill"}
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["cancelationReason"] == {"text": "Patient ill"}
    assert _slot(secure_server, slot_id)[1]["status"] == "free"
    statuses = _db(
        secure_server,
        "SELECT resource->>'status' FROM resource_versions"
        " WHERE resource_type = 'Appointment' AND id = :i ORDER BY version_id",
        i=cancelled_visit["id"],
    )
    assert [s[0] for s in statuses] == ["booked", "cancelled"]


def test_search_appointments_by_date_practitioner_location_patient_status(
    desk: SchedulingClient, clinic: SchedulingClinic
) -> None:
    visit = _appointment(desk, clinic, 3)
    day = visit["start"][:10]
    found = desk.fhir(
        "Appointment",
        date=day,
        practitioner=f"Practitioner/{clinic.practitioners[0]}",
        location="Location/loc-east",
        patient=f"Patient/{clinic.patients[3]}",
        status="booked",
    )
    assert found.status_code == 200, found.text
    assert visit["id"] in {e["resource"]["id"] for e in found.json()["entry"]}
    other_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    later = desk.fhir("Appointment", date=other_day, patient=f"Patient/{clinic.patients[3]}")
    assert visit["id"] not in {e["resource"]["id"] for e in later.json().get("entry", [])}


def test_a_nurse_may_not_generate_slots(secure_server: Any, clinic: SchedulingClinic) -> None:
    nurse = SchedulingClient(secure_server, "nurse", ["loc-east"])
    try:
        first = next_monday(5)
        body = {
            "schedule": f"Schedule/{clinic.schedules[clinic.practitioners[0]]}",
            "template": {"weekdays": [1], "start": "08:00", "end": "09:00", "slot_minutes": 20},
            "from": first.isoformat(),
            "to": first.isoformat(),
        }
        response = nurse.post("/slots/generate", body)
        assert response.status_code == 403
    finally:
        nurse.close()
