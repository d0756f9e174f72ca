"""pytest-qt: the front desk's flow (find a free slot, book, check in) and a physician's day.

A real encrypted profile caching a clinic in America/Chicago: Synthea
practitioners with schedules and free slots, Synthea patients; the schedule
screen drives `Workstation.scheduling` on the store thread like the app does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from PySide6.QtCore import QDate, Qt
from PySide6.QtTest import QAbstractItemModelTester
from scheduling_support import LocalProfile, offline_copy

from desktop.store import outbox
from desktop.ui.context import UiContext
from desktop.ui.schedule.page import SchedulePage

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("module_keychain")]

ZONE = ZoneInfo("America/Chicago")
WAIT = 10_000


@pytest.fixture
def ctx(qtbot: Any, local_profile: LocalProfile, tmp_path: Path) -> Iterator[UiContext]:
    ws = offline_copy(local_profile, tmp_path)
    context = UiContext.create(ws)
    yield context
    context.shutdown()
    ws.close()


def _page(qtbot: Any, ctx: UiContext) -> SchedulePage:
    page = SchedulePage(ctx)
    qtbot.addWidget(page)
    page.show()
    qtbot.waitExposed(page)
    QAbstractItemModelTester(page.day_model, QAbstractItemModelTester.FailureReportingMode.Fatal)
    QAbstractItemModelTester(page.week_model, QAbstractItemModelTester.FailureReportingMode.Fatal)
    page.date_edit.setDate(QDate(*datetime.now(ZONE).date().timetuple()[:3]))
    with qtbot.waitSignal(page.refreshed, timeout=WAIT):
        page.load_scopes()
    return page


def _row_of(page: SchedulePage, predicate: Any) -> int:
    return next(i for i, r in enumerate(page.day_model.records) if predicate(r))


def test_front_desk_finds_a_free_slot_books_and_checks_in(
    qtbot: Any, ctx: UiContext, local_profile: LocalProfile
) -> None:
    patients = local_profile.patients
    page = _page(qtbot, ctx)
    assert page.scope_box.currentText() == "Clinic loc-main (everyone)"
    assert "America/Chicago" in page.zone_label.text()
    free = _row_of(page, lambda r: r.is_free)
    slot = page.day_model.record(free)
    assert slot.start.strftime("%H:%M") == "08:00" and slot.start.tzinfo == ZONE
    page.day_view.selectRow(free)
    assert page.buttons["book"].isEnabled() and not page.buttons["check_in"].isEnabled()

    qtbot.mouseClick(page.buttons["book"], Qt.MouseButton.LeftButton)
    picker = page.picker
    qtbot.waitExposed(picker)
    qtbot.keyClicks(picker.reason, "Flu vaccine")
    patient = patients[1]
    with qtbot.waitSignal(picker.search.results_shown, timeout=WAIT):
        qtbot.keyClicks(picker.search.box, f"{patient.family[:4]} {patient.given[:2]}")
    with qtbot.waitSignal(page.refreshed, timeout=WAIT):
        qtbot.keyClick(picker.search.box, Qt.Key.Key_Return)
    booked = _row_of(page, lambda r: r.appointment and r.appointment.description == "Flu vaccine")
    row = page.day_model.record(booked)
    assert row.start == slot.start and row.patient.startswith(patient.family)
    assert row.status == "pending confirmation" and row.pending
    assert page.day_model.data(page.day_model.index(booked, 5)) == "pending confirmation"

    page.day_view.selectRow(booked)
    assert page.buttons["check_in"].isEnabled()
    with qtbot.waitSignal(page.refreshed, timeout=WAIT):
        qtbot.mouseClick(page.buttons["check_in"], Qt.MouseButton.LeftButton)
    arrived = page.day_model.record(
        _row_of(page, lambda r: r.appointment and r.appointment.description == "Flu vaccine")
    )
    assert arrived.status == "arrived (not synced)"

    ws = ctx.workstation
    queued = outbox.pending(ws._db().connection())
    assert [e.resource_type for e in queued] == ["Appointment", "Appointment"]
    stored = orjson.loads(queued[-1].json or b"{}")
    assert slot.slot is not None and stored["status"] == "arrived"
    assert stored["slot"] == [{"reference": f"Slot/{slot.slot.slot_id}"}]
    assert queued[0].base_version is None and queued[0].id == queued[1].id


def test_physicians_day_view_and_week(
    qtbot: Any, ctx: UiContext, local_profile: LocalProfile
) -> None:
    patients, practitioners = local_profile.patients, local_profile.practitioners
    ctx.user = SimpleNamespace(practitioner=f"Practitioner/{practitioners[0]}")
    page = _page(qtbot, ctx)
    scope = page.scope()
    assert scope is not None and scope.practitioner_id == practitioners[0]
    appointments = [r for r in page.day_model.records if not r.is_free]
    assert [r.start.strftime("%H:%M") for r in appointments] == ["09:00", "10:00"]
    assert {r.appointment.patient_id for r in appointments if r.appointment} == {
        p.id for p in patients
    }
    assert all(r.status == "booked" for r in appointments)
    times = [
        page.day_model.data(page.day_model.index(i, 0)) for i in range(page.day_model.rowCount())
    ]
    assert times == sorted(times) and len(times) == 12  # 12 slots, 2 of them booked
    page.day_view.selectRow(_row_of(page, lambda r: not r.is_free))
    with qtbot.waitSignal(page.open_patient, timeout=WAIT) as opened:
        qtbot.mouseClick(page.buttons["chart"], Qt.MouseButton.LeftButton)
    assert opened.args[0] in {p.id for p in patients}

    with qtbot.waitSignal(page.refreshed, timeout=WAIT):
        page.modes.setCurrentIndex(1)
    week = page.week_model
    assert week.columnCount() == 7 and week.rowCount() == 12
    today = datetime.now(ZONE).date()
    column = today.weekday()
    assert week.headerData(column, Qt.Orientation.Horizontal) == today.strftime("%a %d %b")
    nine = [week.headerData(r, Qt.Orientation.Vertical) for r in range(12)].index("09:00")
    assert patients[0].family in week.data(week.index(nine, column))
    if column + 1 < 7:
        assert week.data(week.index(nine, column + 1)) == "1 free"
