"""Today's schedule at my locations: time, patient, reason, status; Enter opens the chart."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop.services.schedule_view import ScheduleEntry
from desktop.ui.context import UiContext
from desktop.ui.ops import Op, touches
from desktop.ui.record_table import Column, RecordTableModel, make_table_view

COLUMNS: list[Column[ScheduleEntry]] = [
    Column("Time", lambda e: e.start.strftime("%H:%M") if e.start else ""),
    Column("Patient", lambda e: e.patient_name),
    Column("Reason", lambda e: e.description),
    Column("Status", lambda e: e.status),
    Column("MRN", lambda e: e.mrn),
]


class TodaySchedule(QWidget):
    open_patient = Signal(str)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.model: RecordTableModel[ScheduleEntry] = RecordTableModel(
            COLUMNS, self, muted=lambda e: e.status in ("fulfilled", "cancelled", "noshow")
        )
        self.view = make_table_view(self.model, self)
        self.view.setObjectName("scheduleView")
        self.view.activated.connect(self._activated)
        self.view.doubleClicked.connect(self._activated)
        self.hint = QLabel()
        self.hint.setProperty("role", "hint")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        layout.addWidget(self.hint)
        ctx.bus.changed.connect(self._changed)

    def _changed(self, kinds: frozenset[str], _patient_id: str | None) -> None:
        if touches(kinds, "appointments"):
            self.refresh()

    def refresh(self) -> None:
        locations = tuple(getattr(self.ctx.user, "locations", ()) or ())
        Op(self, lambda ws: ws.todays_schedule(None, locations or None), name="schedule").success(
            self.show_entries
        ).failure(lambda _e: None).run(self.ctx)

    def show_entries(self, entries: list[ScheduleEntry]) -> None:
        self.model.set_records(entries)
        self.hint.setText(
            f"{len(entries)} appointment(s) today." if entries else "No appointments today."
        )

    def _activated(self, index: QModelIndex) -> None:
        entry = self.model.record(index.row())
        if entry.patient_id:
            self.open_patient.emit(entry.patient_id)
