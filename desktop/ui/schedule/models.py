"""Qt models of the schedule: a day as rows (free slots and appointments), a week as a grid.

Both read the facade's frozen view records (`desktop.services.scheduling`);
times are already in the location's zone, so the models only format them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush

from desktop.services.scheduling import AppointmentView, DaySchedule, SlotView
from desktop.ui.record_table import (
    CONFLICT_COLOUR,
    MUTED_COLOUR,
    PENDING_COLOUR,
    RECORD_ROLE,
    Column,
    RecordTableModel,
)

_Index = QModelIndex | QPersistentModelIndex
_DONE = ("fulfilled", "cancelled", "noshow", "entered-in-error")


@dataclass(frozen=True)
class ScheduleRow:
    """One line of a day: a free slot, or an appointment."""

    start: datetime
    end: datetime | None
    slot: SlotView | None = None
    appointment: AppointmentView | None = None
    #: Who the slot or appointment is with (display name).
    practitioner: str = ""

    @property
    def is_free(self) -> bool:
        return self.appointment is None

    @property
    def pending(self) -> bool:
        return self.appointment is not None and self.appointment.sync_state == "pending"

    @property
    def conflict(self) -> bool:
        return self.appointment is not None and self.appointment.sync_state == "rejected"

    @property
    def status(self) -> str:
        return "free" if self.appointment is None else self.appointment.label

    @property
    def patient(self) -> str:
        return self.appointment.patient_name if self.appointment else ""


def day_rows(day: DaySchedule, names: dict[str, str]) -> list[ScheduleRow]:
    """Free slots and appointments of a day, in time order."""
    rows = [
        ScheduleRow(s.start, s.end, slot=s, practitioner=names.get(s.practitioner_id or "", ""))
        for s in day.free_slots
    ]
    rows += [
        ScheduleRow(a.start, a.end, appointment=a,
                    practitioner=names.get(a.practitioner_id or "", ""))
        for a in day.appointments
        if a.start is not None
    ]  # fmt: skip
    return sorted(rows, key=lambda r: (r.start, r.is_free, r.practitioner))


DAY_COLUMNS: list[Column[ScheduleRow]] = [
    Column("Time", lambda r: r.start.strftime("%H:%M"), sort_key=lambda r: r.start),
    Column("With", lambda r: r.practitioner),
    Column("Patient", lambda r: r.patient),
    Column("MRN", lambda r: r.appointment.mrn if r.appointment else ""),
    Column("Reason", lambda r: r.appointment.description if r.appointment else ""),
    Column(
        "Status",
        lambda r: r.status,
        tooltip=lambda r: (r.appointment.reason or "") if r.appointment else "",
    ),
]


def _muted(row: ScheduleRow) -> bool:
    return row.is_free or (row.appointment is not None and row.appointment.status in _DONE)


class DayScheduleModel(RecordTableModel[ScheduleRow]):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(
            DAY_COLUMNS,
            parent,
            muted=lambda r: (
                r.is_free or (r.appointment is not None and r.appointment.status in _DONE)
            ),
        )


class WeekScheduleModel(QAbstractTableModel):
    """Seven day columns; one row per time of day that has a slot or appointment."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._days: list[DaySchedule] = []
        self._times: list[str] = []
        self._cells: dict[tuple[str, int], list[ScheduleRow]] = {}

    def set_week(self, days: list[DaySchedule], names: dict[str, str]) -> None:
        self.beginResetModel()
        self._days = list(days)
        self._cells = {}
        for column, day in enumerate(self._days):
            for row in day_rows(day, names):
                self._cells.setdefault((row.start.strftime("%H:%M"), column), []).append(row)
        self._times = sorted({time for time, _ in self._cells})
        self.endResetModel()

    def rows_at(self, index: _Index) -> list[ScheduleRow]:
        if not index.isValid():
            return []
        return list(self._cells.get((self._times[index.row()], index.column()), []))

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._times)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._days)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        rows = self.rows_at(index)
        booked = [r for r in rows if not r.is_free]
        if role == Qt.ItemDataRole.DisplayRole:
            names = [r.patient for r in booked]
            free = len(rows) - len(booked)
            if free:
                names.append(f"{free} free")
            return ", ".join(names)
        if role == RECORD_ROLE:
            return rows
        if role == Qt.ItemDataRole.ForegroundRole:
            if any(r.conflict for r in rows):
                return QBrush(CONFLICT_COLOUR)
            if any(r.pending for r in rows):
                return QBrush(PENDING_COLOUR)
            if not booked:
                return QBrush(MUTED_COLOUR)
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self._days):
            return self._days[section].day.strftime("%a %d %b")
        if orientation == Qt.Orientation.Vertical and 0 <= section < len(self._times):
            return self._times[section]
        return None
