"""Summary tab: the chart on one screen (problems, medications, allergies, latest vitals,
upcoming appointments, recent notes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtWidgets import QGridLayout, QGroupBox, QHeaderView, QVBoxLayout, QWidget

from desktop.services.chart import AppointmentItem, ChartView, LatestVital
from desktop.ui.chart import allergies, medications, notes, problems
from desktop.ui.record_table import Column, RecordTableModel, make_table_view

RECENT_NOTES = 8


def _when(value: datetime | None) -> str:
    return value.strftime("%d %b %Y %H:%M") if value else ""


VITAL_COLUMNS: list[Column[LatestVital]] = [
    Column("Vital sign", lambda v: v.label),
    Column("Latest", lambda v: v.text),
    Column("Taken", lambda v: _when(v.when)),
]
APPOINTMENT_COLUMNS: list[Column[AppointmentItem]] = [
    Column("When", lambda a: _when(a.start)),
    Column("Appointment", lambda a: a.description),
    Column("Status", lambda a: a.status),
]


class SummaryTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.models: dict[str, RecordTableModel[Any]] = {
            "problems": RecordTableModel(problems.COLUMNS[:2], self),
            "medications": RecordTableModel(medications.COLUMNS[:2], self),
            "allergies": RecordTableModel(allergies.COLUMNS[:3], self),
            "vitals": RecordTableModel(VITAL_COLUMNS, self),
            "appointments": RecordTableModel(APPOINTMENT_COLUMNS, self),
            "notes": RecordTableModel(notes.COLUMNS, self),
        }
        titles = {
            "problems": "Active problems",
            "medications": "Active medications",
            "allergies": "Allergies",
            "vitals": "Latest vitals",
            "appointments": "Upcoming appointments",
            "notes": "Recent notes",
        }
        grid = QGridLayout(self)
        self.views = {}
        for position, (key, model) in enumerate(self.models.items()):
            box = QGroupBox(titles[key])
            box.setObjectName(f"summary_{key}")
            view = make_table_view(model, box)
            view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
            QVBoxLayout(box).addWidget(view)
            self.views[key] = view
            grid.addWidget(box, position // 2, position % 2)

    def set_chart(self, chart: ChartView) -> None:
        self.models["problems"].set_records(chart.problems)
        self.models["medications"].set_records(chart.medications)
        self.models["allergies"].set_records(chart.allergies)
        self.models["vitals"].set_records(chart.latest_vitals)
        self.models["appointments"].set_records(chart.appointments)
        self.models["notes"].set_records(chart.notes[:RECENT_NOTES])
        self.ensurePolished()
        for view in self.views.values():
            view.resizeColumnsToContents()
