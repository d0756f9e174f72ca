"""Two workstations book the same slot, one of them offline: one wins, nothing is lost.

Real server (HTTP on 127.0.0.1, real sign-in, PostgreSQL), real SQLCipher
profiles driven through `Workstation.scheduling`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from desktop_store_helpers import FAST_KDF
from identity_support import make_user
from scheduling_support import SchedulingClient, SchedulingClinic, next_monday, workstation
from server_fixtures import free_port
from sqlalchemy import text

from desktop.services.workstation import Workstation
from shared_models.errors import NetworkUnavailable
from shared_models.scheduling import SlotUnavailable

pytestmark = pytest.mark.usefixtures("module_keychain")


@pytest.fixture(scope="module")
def day(secure_server: Any, clinic: SchedulingClinic) -> Iterator[Any]:
    desk = SchedulingClient(secure_server, "front_desk", ["loc-east"])
    monday = next_monday(2)
    desk.generate(clinic.schedules[clinic.practitioners[0]], monday, monday)
    desk.generate(clinic.schedules[clinic.practitioners[1]], monday, monday)
    yield monday, desk
    desk.close()


def _server(server: Any, sql: str, **params: Any) -> list[Any]:
    with server.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def test_two_workstations_one_offline_book_the_same_slot(
    secure_server: Any, clinic: SchedulingClinic, day: Any, tmp_path: Path
) -> None:
    monday, desk = day
    practitioner = clinic.practitioners[0]
    # A visit booked earlier on the server, which the offline nurse will check in.
    first = desk.free_slots(
        practitioner=f"Practitioner/{practitioner}", start=f"{monday.isoformat()}T00:00:00Z"
    )[0]
    earlier = desk.post("/book", {"slot": first["id"], "patient": f"Patient/{clinic.patients[2]}"})
    assert earlier.status_code == 201
    earlier_id = earlier.json()["id"]

    user_a = make_user(secure_server, "desk.a", ["front_desk"], ["loc-east"])
    user_b = make_user(secure_server, "desk.b", ["front_desk", "nurse"], ["loc-east"])
    a = workstation(tmp_path / "a", secure_server.url, user_a)
    b = workstation(tmp_path / "b", secure_server.url, user_b)
    try:
        a.sync()
        b.sync()
        b.close()
        # B loses the network: it reopens against a server nobody answers on.
        b = Workstation.open(tmp_path / "b", f"http://127.0.0.1:{free_port()}", kdf=FAST_KDF)
        b.sign_in_offline(user_b.username, user_b.password)

        view_a = a.scheduling.day(monday, practitioner_id=practitioner)
        assert view_a.zone == "America/New_York"
        wanted = view_a.free_slots[1]
        assert wanted.start.tzinfo == ZoneInfo("America/New_York")
        assert wanted.start.strftime("%H:%M") == "08:40"  # 08:00 is the earlier visit

        b.scheduling.book(wanted.slot_id, clinic.patients[1], "Blood pressure review")
        b.scheduling.check_in(earlier_id)
        pending = b.scheduling.day(monday, practitioner_id=practitioner)
        mine = [x for x in pending.appointments if x.patient_id == clinic.patients[1]]
        assert [x.label for x in mine] == ["pending confirmation"]
        assert wanted.slot_id not in {s.slot_id for s in pending.free_slots}
        with pytest.raises(SlotUnavailable):  # taken locally: offered alternatives instead
            b.scheduling.book(wanted.slot_id, clinic.patients[3])
        with pytest.raises(NetworkUnavailable):
            b.sync()

        a.scheduling.book(wanted.slot_id, clinic.patients[0], "New patient visit")
        a.sync()
        b.close()
        b = Workstation.open(tmp_path / "b", secure_server.url, kdf=FAST_KDF)
        b.sign_in_offline(user_b.username, user_b.password)
        report = b.sync()
        assert report.rejected == 1 and report.applied == 1

        refused = b.scheduling.rejected_bookings()
        assert len(refused) == 1
        assert "already booked" in refused[0].reason
        alternatives = refused[0].alternatives
        assert len(alternatives) == 3 and wanted.slot_id not in {s.slot_id for s in alternatives}
        nearest = {s.start.strftime("%H:%M") for s in alternatives}
        assert nearest <= {"08:20", "09:00", "09:20", "08:40"}
        shown = b.scheduling.day(monday, practitioner_id=practitioner)
        assert "rejected: choose another slot" in {x.label for x in shown.appointments}

        b.scheduling.rebook(refused[0].conflict_id, alternatives[0].slot_id)
        assert b.scheduling.rejected_bookings() == []
        b.sync()
        a.sync()

        holders = _server(secure_server, "SELECT slot_id, appointment_id FROM slot_bookings")
        by_slot = dict(holders)
        appointments = {
            r[0]: r[1]
            for r in _server(
                secure_server,
                "SELECT id, resource FROM resources WHERE resource_type ="
                " 'Appointment' AND resource->>'start' LIKE :d",
                d=f"{monday.isoformat()}%",
            )
        }
        winner = by_slot[wanted.slot_id]
        assert appointments[winner]["participant"][0]["actor"]["reference"] == (
            f"Patient/{clinic.patients[0]}"
        )
        rebooked = by_slot[alternatives[0].slot_id]
        assert appointments[rebooked]["participant"][0]["actor"]["reference"] == (
            f"Patient/{clinic.patients[1]}"
        )
        assert appointments[rebooked]["description"] == "Blood pressure review"
        assert appointments[earlier_id]["status"] == "arrived"  # the offline check-in synced
        slots = _server(
            secure_server,
            "SELECT id, resource->>'status' FROM resources"
            " WHERE resource_type = 'Slot' AND id = ANY(:i)",
            i=[wanted.slot_id, alternatives[0].slot_id, first["id"]],
        )
        assert {s[1] for s in slots} == {"busy"}
        final_a = a.scheduling.day(monday, practitioner_id=practitioner)
        assert {x.sync_state for x in final_a.appointments} == {"confirmed"}
        assert len(final_a.appointments) == 3
        assert a.list_pending_changes() == [] and b.list_pending_changes() == []
        upcoming, past = b.scheduling.patient_appointments(clinic.patients[1])
        assert [x.slot_id for x in upcoming] == [alternatives[0].slot_id] and past == []
        assert upcoming[0].start is not None and upcoming[0].start.date() == monday
    finally:
        a.close()
        b.close()
