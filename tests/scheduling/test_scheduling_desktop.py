"""`Workstation.scheduling` offline on a real encrypted profile: views, changes, time zones."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from desktop_store_helpers import FAST_KDF, PASSWORD, enroll
from scheduling_support import LOCAL_ZONE, USER, LocalProfile, local_clinic, offline_copy

from desktop.services.workstation import Workstation
from shared_models.errors import ValidationFailed
from shared_models.scheduling import SlotUnavailable, TransitionNotAllowed

pytestmark = pytest.mark.usefixtures("module_keychain")


@pytest.fixture
def ws(local_profile: LocalProfile, tmp_path: Path) -> Iterator[Workstation]:
    workstation = offline_copy(local_profile, tmp_path)
    yield workstation
    workstation.close()


def _today() -> date:
    return datetime.now(LOCAL_ZONE).date()


def test_reschedule_cancel_and_no_show_offline(
    ws: Workstation, local_profile: LocalProfile
) -> None:
    practitioner = local_profile.practitioners[0]
    desk = ws.scheduling
    day = desk.day(_today(), practitioner_id=practitioner)
    assert [a.start.strftime("%H:%M") for a in day.appointments if a.start] == ["09:00", "10:00"]
    nine, ten = day.appointments
    target = next(s for s in day.free_slots if s.start.strftime("%H:%M") == "11:00")

    desk.reschedule(nine.appointment_id, target.slot_id)
    moved = desk.day(_today(), practitioner_id=practitioner)
    times = {a.appointment_id: a.start.strftime("%H:%M") for a in moved.appointments if a.start}
    assert times[nine.appointment_id] == "11:00"
    free = {s.start.strftime("%H:%M") for s in moved.free_slots}
    # The new slot is taken at once; the old one stays busy until the server frees it.
    assert "11:00" not in free and "09:00" not in free

    with pytest.raises(ValidationFailed):
        desk.cancel(ten.appointment_id, "   ")
    pending = len(ws.list_pending_changes())
    desk.cancel(ten.appointment_id, "Patient called in sick")
    cancelled = ws.get_resource("Appointment", ten.appointment_id)[0]
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelationReason"] == {"text": "Patient called in sick"}
    assert len(ws.list_pending_changes()) == pending + 1
    after = desk.day(_today(), practitioner_id=practitioner)
    shown = {a.appointment_id: a for a in after.appointments}
    assert shown[ten.appointment_id].label == "cancelled (not synced)"
    assert not shown[ten.appointment_id].holds_slot
    with pytest.raises(TransitionNotAllowed):
        desk.check_in(ten.appointment_id)

    desk.no_show(nine.appointment_id)
    assert ws.get_resource("Appointment", nine.appointment_id)[0]["status"] == "noshow"
    queued = ws.list_pending_changes()
    assert {e.id for e in queued} == {nine.appointment_id, ten.appointment_id}
    assert all(e.base_version == 1 for e in queued)  # edits of the server's version 1


def test_a_slot_taken_here_is_refused_with_the_nearest_free_slots(
    ws: Workstation, local_profile: LocalProfile
) -> None:
    practitioner = local_profile.practitioners[0]
    tomorrow = _today() + timedelta(days=1)  # today's slots may already be in the past
    day = ws.scheduling.day(tomorrow, practitioner_id=practitioner)
    first = day.free_slots[0]
    ws.scheduling.book(first.slot_id, local_profile.patients[0].id)
    with pytest.raises(SlotUnavailable) as refused:
        ws.scheduling.book(first.slot_id, local_profile.patients[1].id)
    starts = [s["start"] for s in refused.value.alternatives]
    assert len(starts) == 3 and first.start.isoformat() not in starts
    nearest = min(abs(datetime.fromisoformat(s) - first.start) for s in starts)
    assert nearest.total_seconds() == 20 * 60
    patient = local_profile.patients[0].id
    midnight = datetime.combine(_today(), datetime.min.time(), LOCAL_ZONE)
    upcoming, past = ws.scheduling.patient_appointments(patient, now=midnight)
    assert [a.start.strftime("%H:%M") for a in upcoming if a.start] == ["09:00", "08:00"]
    assert upcoming[1].slot_id == first.slot_id and upcoming[1].label == "pending confirmation"
    assert past == []
    upcoming, past = ws.scheduling.patient_appointments(patient, now=midnight + timedelta(days=2))
    assert upcoming == [] and past[0].slot_id == first.slot_id and len(past) == 2


def test_day_view_on_a_daylight_saving_change_day(
    shared_data: Path, tmp_path: Path, module_keychain: Path
) -> None:
    resources, practitioners = local_clinic(
        shared_data, date(2027, 3, 13), days=3, zone="America/New_York", location_id="loc-east"
    )
    enroll(tmp_path / "dst", USER, resources=resources)
    with Workstation.open(tmp_path / "dst", None, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(USER, PASSWORD)
        views = {
            day: ws.scheduling.day(date(2027, 3, day), location_id="loc-east") for day in (13, 14)
        }
        for day, view in views.items():
            assert view.zone == "America/New_York"
            assert len(view.free_slots) == 2 * 12  # two practitioners, 08:00-12:00 every 20 min
            assert {s.start.date() for s in view.free_slots} == {date(2027, 3, day)}
            assert view.free_slots[0].start.strftime("%H:%M") == "08:00"
        offsets = {d: {s.start.utcoffset() for s in v.free_slots} for d, v in views.items()}
        assert {o.total_seconds() / 3600 for o in offsets[13] if o} == {-5}
        assert {o.total_seconds() / 3600 for o in offsets[14] if o} == {-4}
        stored = orjson.loads(
            ws._db()
            .connection()
            .execute("SELECT json FROM resources WHERE id = ?", (views[14].free_slots[0].slot_id,))
            .fetchone()[0]
        )
        assert stored["start"] == "2027-03-14T08:00:00-04:00"
        assert views[14].free_slots[0].start.tzinfo == ZoneInfo("America/New_York")
        assert practitioners
