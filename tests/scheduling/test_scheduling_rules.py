"""The pure scheduling rules: slots from templates in the location's zone, DST, alternatives."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared_models.errors import ValidationFailed
from shared_models.fhir_constants import TIMEZONE_EXTENSION
from shared_models.scheduling import (
    ScheduleTemplate,
    TransitionNotAllowed,
    apply_transition,
    location_zone,
    nearest_free,
    slot_id,
    slot_resource,
    slot_times,
)

NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS = ScheduleTemplate(
    weekdays=frozenset({1, 2, 3, 4, 5}),
    start=time(8),
    end=time(12),
    slot_minutes=20,
    breaks=((time(10), time(10, 20)),),
)


def test_weekday_template_with_break_and_holiday() -> None:
    holiday = date(2027, 1, 4)  # a Monday
    template = ScheduleTemplate(**{**WEEKDAYS.__dict__, "holidays": frozenset({holiday})})
    slots = list(slot_times(template, date(2027, 1, 2), date(2027, 1, 8), NEW_YORK))
    days = sorted({start.date() for start, _ in slots})
    assert days == [date(2027, 1, d) for d in (5, 6, 7, 8)]  # weekend and holiday skipped
    tuesday = [s for s, _ in slots if s.date() == date(2027, 1, 5)]
    assert len(tuesday) == 11  # 12 slots in 08:00-12:00, one dropped for the break
    assert time(10) not in {s.time() for s in tuesday}
    assert tuesday[0].isoformat() == "2027-01-05T08:00:00-05:00"


def test_dst_spring_forward_day_keeps_wall_clock_and_changes_offset() -> None:
    every_day = ScheduleTemplate(frozenset(range(1, 8)), time(8), time(9), 30)
    slots = list(slot_times(every_day, date(2027, 3, 13), date(2027, 3, 14), NEW_YORK))
    assert [s.isoformat() for s, _ in slots] == [
        "2027-03-13T08:00:00-05:00",
        "2027-03-13T08:30:00-05:00",
        "2027-03-14T08:00:00-04:00",
        "2027-03-14T08:30:00-04:00",
    ]
    assert {s.astimezone(UTC).hour for s, _ in slots[:2]} == {13}
    assert {s.astimezone(UTC).hour for s, _ in slots[2:]} == {12}


def test_dst_skipped_and_repeated_hours() -> None:
    night = ScheduleTemplate(frozenset(range(1, 8)), time(0), time(4), 60)
    spring = list(slot_times(night, date(2027, 3, 14), date(2027, 3, 14), NEW_YORK))
    assert [s.strftime("%H:%M%z") for s, _ in spring] == ["00:00-0500", "01:00-0500", "03:00-0400"]
    fall = list(slot_times(night, date(2026, 11, 1), date(2026, 11, 1), NEW_YORK))
    assert [s.strftime("%H:%M%z") for s, _ in fall] == [
        "00:00-0400",
        "01:00-0400",
        "02:00-0500",
        "03:00-0500",
    ]
    for start, end in spring + fall:  # every slot lasts its real length
        assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=1)


def test_slot_resource_keeps_the_offset_and_a_stable_id() -> None:
    start = datetime(2027, 3, 14, 8, tzinfo=ZoneInfo("America/Chicago"))
    slot = slot_resource("sched-1", start, start + timedelta(minutes=20))
    assert slot["start"] == "2027-03-14T08:00:00-05:00"
    assert slot["status"] == "free"
    assert slot["id"] == slot_id("sched-1", start.astimezone(UTC))
    assert slot["id"] != slot_id("sched-2", start)


def test_location_zone_from_the_timezone_extension() -> None:
    location = {
        "resourceType": "Location",
        "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": "Europe/Berlin"}],
    }
    assert location_zone(location) == ZoneInfo("Europe/Berlin")
    with pytest.raises(ValidationFailed):
        location_zone({"resourceType": "Location"})
    with pytest.raises(ValidationFailed):
        location_zone({"extension": [{"url": TIMEZONE_EXTENSION, "valueCode": "Mars/Olympus"}]})


def test_invalid_templates_are_refused() -> None:
    with pytest.raises(ValidationFailed):
        ScheduleTemplate(frozenset({8}), time(8), time(12), 20)
    with pytest.raises(ValidationFailed):
        ScheduleTemplate(frozenset({1}), time(12), time(8), 20)
    with pytest.raises(ValidationFailed):
        ScheduleTemplate.from_json({"weekdays": [1], "start": "8 o'clock"})


@given(
    minutes=st.sampled_from([10, 15, 20, 30, 45]),
    first=st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 1)),
    zone=st.sampled_from(["America/New_York", "Europe/London", "Australia/Lord_Howe"]),
)
def test_slots_never_overlap_and_stay_inside_opening_hours(
    minutes: int, first: date, zone: str
) -> None:
    template = ScheduleTemplate(
        frozenset(range(1, 8)), time(7), time(13), minutes, breaks=((time(9, 50), time(10, 35)),)
    )
    slots = list(slot_times(template, first, first + timedelta(days=20), ZoneInfo(zone)))
    instants = [(s.astimezone(UTC), e.astimezone(UTC)) for s, e in slots]
    for (_, end), (start, _) in itertools.pairwise(instants):
        assert end <= start
    for start, end in slots:
        assert time(7) <= start.time() and end - start == timedelta(minutes=minutes)
        assert not (
            start.time() < time(10, 35)
            and (start + timedelta(minutes=minutes)).time() > time(9, 50)
        )


def _slot(sid: str, start: str, status: str = "free") -> dict[str, str]:
    return {"resourceType": "Slot", "id": sid, "start": start, "status": status}


def test_nearest_free_alternatives() -> None:
    wanted = datetime(2027, 1, 5, 9, tzinfo=NEW_YORK)
    candidates = [
        _slot("a", "2027-01-05T08:00:00-05:00"),
        _slot("b", "2027-01-05T09:20:00-05:00"),
        _slot("c", "2027-01-05T08:40:00-05:00"),
        _slot("d", "2027-01-05T09:00:00-05:00", "busy"),
        _slot("e", "2027-01-05T14:20:00Z"),  # 09:20 New York: same distance as b, same side
    ]
    assert [s["id"] for s in nearest_free(wanted, candidates, 3)] == ["b", "e", "c"]


def test_status_changes_follow_the_rules() -> None:
    booked = {"resourceType": "Appointment", "id": "x", "status": "booked"}
    arrived = apply_transition(booked, "check-in")
    assert arrived["status"] == "arrived" and booked["status"] == "booked"
    assert apply_transition(arrived, "fulfil")["status"] == "fulfilled"
    cancelled = apply_transition(booked, "cancel", reason="Patient request")
    assert cancelled["cancelationReason"] == {"text": "Patient request"}
    with pytest.raises(ValidationFailed):
        apply_transition(booked, "cancel", reason="  ")
    with pytest.raises(TransitionNotAllowed):
        apply_transition(cancelled, "check-in")
    with pytest.raises(TransitionNotAllowed):
        apply_transition(arrived, "no-show")
