"""The schedule screen: a location's or a practitioner's day or week, and the front-desk actions.

Front desk: pick the location and day, select a free row, Book (choose the
patient), later Check in, No-show, Cancel (with a reason) or Reschedule.
Physicians open it on their own day. Everything runs through `Workstation.scheduling`
on the store thread; the views refresh when the change bus says appointments changed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from PySide6.QtCore import QDate, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDateEdit,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.services.scheduling import DaySchedule, ScheduleScope
from desktop.ui.context import UiContext
from desktop.ui.ops import Op, touches
from desktop.ui.reason_dialog import ReasonDialog
from desktop.ui.record_table import make_table_view
from desktop.ui.schedule.dialogs import PatientPickerDialog, SlotPickerDialog
from desktop.ui.schedule.models import (
    DayScheduleModel,
    ScheduleRow,
    WeekScheduleModel,
    day_rows,
)
from desktop.ui.schedule.refused import RefusedBookings

RESCHEDULE_DAYS = 14


class SchedulePage(QWidget):
    open_patient = Signal(str)
    #: The views show fresh data (for tests and the benchmark).
    refreshed = Signal()

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("schedulePage")
        self.scopes: list[ScheduleScope] = []
        self.names: dict[str, str] = {}
        self.day_schedule: DaySchedule | None = None
        self.scope_box = QComboBox()
        self.scope_box.setObjectName("scheduleScope")
        self.scope_box.setAccessibleName("Location or practitioner")
        self.date_edit = QDateEdit(QDate.currentDate())
        self.date_edit.setObjectName("scheduleDate")
        self.date_edit.setCalendarPopup(True)
        self.zone_label = QLabel()
        self.zone_label.setProperty("role", "hint")
        self.refused = RefusedBookings(ctx)
        self.day_model = DayScheduleModel(self)
        self.day_view = make_table_view(self.day_model, self)
        self.day_view.setObjectName("dayView")
        self.day_view.empty_text = "No slots or appointments on this day."
        # Fixed column widths: measuring every row on each day change costs more than the query.
        self.day_view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, width in enumerate((70, 180, 220, 110, 220)):
            self.day_view.setColumnWidth(column, width)
        self.week_model = WeekScheduleModel(self)
        self.week_view = QTableView(self)
        self.week_view.setObjectName("weekView")
        self.week_view.setModel(self.week_model)
        self.modes = QTabWidget()
        self.modes.addTab(self.day_view, "Day")
        self.modes.addTab(self.week_view, "Week")
        self.buttons: dict[str, QPushButton] = {}
        actions = QHBoxLayout()
        for key, text in (("book", "Book…"), ("check_in", "Check in"), ("no_show", "No-show"),
                          ("cancel", "Cancel…"), ("reschedule", "Reschedule…"),
                          ("chart", "Open chart")):  # fmt: skip
            button = QPushButton(text)
            button.setObjectName(f"{key}Button")
            button.setEnabled(False)
            actions.addWidget(button)
            self.buttons[key] = button
        actions.addStretch(1)
        bar = QHBoxLayout()
        for widget in (QLabel("Schedule of"), self.scope_box, QLabel("on"), self.date_edit):
            bar.addWidget(widget)
        for text, days in (("◀", -1), ("Today", 0), ("▶", 1)):
            step = QPushButton(text)
            step.clicked.connect(lambda _=False, d=days: self.step(d))
            bar.addWidget(step)
        bar.addWidget(self.zone_label, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.refused)
        layout.addWidget(self.modes, 1)
        layout.addLayout(actions)
        self.scope_box.currentIndexChanged.connect(lambda _i: self.refresh())
        self.date_edit.dateChanged.connect(lambda _d: self.refresh())
        self.modes.currentChanged.connect(lambda _i: self.refresh())
        self.day_view.selectionModel().selectionChanged.connect(lambda *_: self._enable())
        self.day_view.doubleClicked.connect(lambda _i: self._primary())
        self.buttons["book"].clicked.connect(self.book)
        self.buttons["check_in"].clicked.connect(lambda: self._status("check_in"))
        self.buttons["no_show"].clicked.connect(lambda: self._status("no_show"))
        self.buttons["cancel"].clicked.connect(self.cancel)
        self.buttons["reschedule"].clicked.connect(self.reschedule)
        self.buttons["chart"].clicked.connect(self._open_chart)
        self.refused.rebooked.connect(self.refresh)
        ctx.bus.changed.connect(self._changed)

    # -- loading -------------------------------------------------------------------------

    def load_scopes(self) -> None:
        """Read the locations and practitioners with a schedule; the user's own first."""

        def show(scopes: list[ScheduleScope]) -> None:
            own = (self.ctx.practitioner or "").rpartition("/")[2]
            self.scopes = sorted(scopes, key=lambda s: s.practitioner_id != own or not own)
            self.names = {s.practitioner_id: s.label for s in scopes if s.practitioner_id}
            self.scope_box.blockSignals(True)
            self.scope_box.clear()
            self.scope_box.addItems([s.label for s in self.scopes])
            self.scope_box.blockSignals(False)
            self.refresh()

        Op(self, lambda ws: ws.scheduling.scopes(), name="schedule-scopes").success(show).run(
            self.ctx
        )

    def scope(self) -> ScheduleScope | None:
        index = self.scope_box.currentIndex()
        return self.scopes[index] if 0 <= index < len(self.scopes) else None

    def day(self) -> date:
        picked = self.date_edit.date()
        return date(picked.year(), picked.month(), picked.day())

    def step(self, days: int) -> None:
        target = QDate.currentDate() if days == 0 else self.date_edit.date().addDays(days)
        self.date_edit.setDate(target)

    def refresh(self) -> None:
        scope = self.scope()
        if scope is None:
            return
        day, week = self.day(), self.modes.currentIndex() == 1
        where: dict[str, Any] = {
            "location_id": scope.location_id, "practitioner_id": scope.practitioner_id,
        }  # fmt: skip

        def load(ws: Any) -> tuple[list[DaySchedule], list[Any]]:
            desk = ws.scheduling
            first = day - timedelta(days=day.weekday()) if week else day
            days = desk.week(first, **where) if week else [desk.day(day, **where)]
            return days, desk.rejected_bookings()

        Op(self, load, name="schedule").success(self._show).run(self.ctx)

    def _show(self, answer: tuple[list[DaySchedule], list[Any]]) -> None:
        days, refusals = answer
        if len(days) == 1:
            self.day_schedule = days[0]
            self.day_model.set_records(day_rows(days[0], self.names))
        else:
            self.week_model.set_week(days, self.names)
        self.zone_label.setText(f"Times in {days[0].zone}" if days else "")
        self.refused.show_refusals(refusals)
        self._enable()
        self.refreshed.emit()

    def _changed(self, kinds: frozenset[str], _patient: str | None) -> None:
        if touches(kinds, "appointments") or touches(kinds, "conflicts"):
            self.refresh()

    # -- actions ---------------------------------------------------------------------------

    def selected(self) -> ScheduleRow | None:
        rows = self.day_view.selectionModel().selectedRows()
        return self.day_model.record(rows[0].row()) if rows else None

    def _enable(self) -> None:
        row = self.selected()
        appointment = row.appointment if row else None
        status = appointment.status if appointment else ""
        self.buttons["book"].setEnabled(row is not None and row.is_free)
        self.buttons["check_in"].setEnabled(status in ("booked", "pending"))
        self.buttons["no_show"].setEnabled(status in ("booked", "pending"))
        self.buttons["cancel"].setEnabled(status in ("booked", "pending", "arrived", "proposed"))
        self.buttons["reschedule"].setEnabled(status in ("booked", "pending", "proposed"))
        self.buttons["chart"].setEnabled(bool(appointment and appointment.patient_id))

    def _primary(self) -> None:
        row = self.selected()
        if row is not None and row.is_free:
            self.book()
        else:
            self._open_chart()

    def _open_chart(self) -> None:
        row = self.selected()
        if row and row.appointment and row.appointment.patient_id:
            self.open_patient.emit(row.appointment.patient_id)

    def _write(self, name: str, fn: Any) -> None:
        Op(self, fn, name=name, announces=True).run(self.ctx)

    def book(self) -> None:
        row = self.selected()
        if row is None or row.slot is None:
            return
        slot_id = row.slot.slot_id
        self.picker = PatientPickerDialog(self.ctx, f"Book {row.start:%a %d %b %H:%M}", self)

        def chosen() -> None:
            patient, reason = self.picker.patient_id, self.picker.reason.text().strip() or None
            if patient:
                self._write("book", lambda ws: ws.scheduling.book(slot_id, patient, reason))

        self.picker.accepted.connect(chosen)
        self.picker.open()

    def _status(self, action: str) -> None:
        row = self.selected()
        if row is not None and row.appointment is not None:
            appointment_id = row.appointment.appointment_id
            self._write(action, lambda ws: getattr(ws.scheduling, action)(appointment_id))

    def cancel(self) -> None:
        row = self.selected()
        if row is None or row.appointment is None:
            return
        appointment_id = row.appointment.appointment_id
        self.reason_dialog = ReasonDialog(
            "Cancel appointment", "Why is this appointment cancelled?", "Cancel appointment", self
        )
        self.reason_dialog.accepted.connect(
            lambda: self._write(
                "cancel",
                lambda ws: ws.scheduling.cancel(appointment_id, self.reason_dialog.reason()),
            )
        )
        self.reason_dialog.open()

    def reschedule(self) -> None:
        row = self.selected()
        if row is None or row.appointment is None or row.appointment.start is None:
            return
        appointment = row.appointment
        wanted: datetime = row.appointment.start
        start = max(datetime.now(wanted.tzinfo), wanted - timedelta(days=1))

        def offer(slots: list[Any]) -> None:
            self.slot_picker = SlotPickerDialog("Move the appointment to", slots, self)

            def move() -> None:
                slot = self.slot_picker.chosen()
                if slot is not None:
                    self._write(
                        "reschedule",
                        lambda ws: ws.scheduling.reschedule(
                            appointment.appointment_id, slot.slot_id
                        ),
                    )

            self.slot_picker.accepted.connect(move)
            self.slot_picker.open()

        Op(
            self,
            lambda ws: ws.scheduling.free_slots(
                start=start, end=start + timedelta(days=RESCHEDULE_DAYS),
                practitioner_id=appointment.practitioner_id, limit=200,
            ),
            name="free-slots",
        ).success(offer).run(self.ctx)  # fmt: skip
