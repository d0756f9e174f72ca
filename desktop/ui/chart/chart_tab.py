"""One patient's chart: the banner on top, always; the chart sections in tabs below.

Every piece of this tab holds data of ONE patient (`patient_id`), so two open
charts never mix. The chart reloads itself when a write or a sync touches this
patient (the change bus), at most one load at a time.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from desktop.services.chart import ChartView
from desktop.services.vitals import FlowsheetColumn, build_flowsheet
from desktop.ui.chart.allergies import AllergiesPanel
from desktop.ui.chart.banner import PatientBanner
from desktop.ui.chart.medications import MedicationsPanel
from desktop.ui.chart.notes import NotesPanel
from desktop.ui.chart.problems import ProblemsPanel
from desktop.ui.chart.summary import SummaryTab
from desktop.ui.chart.vitals_tab import VitalsTab
from desktop.ui.context import UiContext
from desktop.ui.ops import Op

SECTIONS = ("Summary", "Vitals", "Problems", "Allergies", "Medications", "Notes")


def _load(patient_id: str) -> Any:
    def fn(ws: Any) -> tuple[ChartView, list[FlowsheetColumn]]:
        chart = ws.load_chart(patient_id)
        return chart, build_flowsheet(chart.vitals)

    return fn


class ChartTab(QWidget):
    #: Emitted after the chart's widgets show freshly loaded data.
    loaded = Signal()

    def __init__(self, ctx: UiContext, patient_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.patient_id = patient_id
        self.chart: ChartView | None = None
        self.title = "Loading…"
        self._loading = False
        self._stale = False
        self.banner = PatientBanner()
        self.loading_label = QLabel("Opening the chart…")
        self.loading_label.setProperty("role", "hint")
        self.sections = QTabWidget()
        self.sections.setObjectName("chartSections")
        self.summary = SummaryTab()
        self.vitals = VitalsTab(ctx, patient_id)
        self.problems = ProblemsPanel(ctx, patient_id)
        self.allergies = AllergiesPanel(ctx, patient_id)
        self.medications = MedicationsPanel(ctx, patient_id)
        self.notes = NotesPanel(ctx, patient_id)
        pages = (self.summary, self.vitals, self.problems, self.allergies, self.medications,
                 self.notes)  # fmt: skip
        for number, (name, page) in enumerate(zip(SECTIONS, pages, strict=True), start=1):
            self.sections.addTab(page, f"&{number} {name}")
            shortcut = QShortcut(QKeySequence(f"Alt+{number}"), self)
            shortcut.activated.connect(lambda i=number - 1: self.sections.setCurrentIndex(i))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.banner)
        layout.addWidget(self.loading_label)
        layout.addWidget(self.sections, 1)
        self.banner.hide()
        ctx.bus.changed.connect(self._changed)
        self.reload()

    def reload(self) -> None:
        if self._loading:
            self._stale = True
            return
        self._loading = True
        Op(self, _load(self.patient_id), name="load-chart").success(self._show).failure(
            self._failed
        ).finally_(self._load_done).run(self.ctx)

    def _load_done(self) -> None:
        self._loading = False
        if self._stale:
            self._stale = False
            self.reload()

    def _failed(self, error: BaseException) -> None:
        self.loading_label.setText("The chart could not be opened.")
        self.ctx.errors.show(self, error)

    def _show(self, result: tuple[ChartView, list[FlowsheetColumn]]) -> None:
        chart, flowsheet = result
        self.chart = chart
        self.title = chart.banner.name or "Unnamed patient"
        self.banner.set_banner(
            chart.banner, pending=len(chart.pending_ids), conflicts=len(chart.conflict_ids)
        )
        self.banner.show()
        self.loading_label.hide()
        self.summary.set_chart(chart, flowsheet)
        self.vitals.set_flowsheet(flowsheet)
        self.problems.set_records(chart.problems)
        self.allergies.set_records(chart.allergies)
        self.medications.set_records(chart.medications)
        self.notes.set_notes(chart.notes)
        self.loaded.emit()

    def _changed(self, kinds: frozenset[str], patient_id: str | None) -> None:
        if patient_id in (None, self.patient_id) and kinds:
            self.reload()

    def close_chart(self) -> None:
        """Keep a draft being written, then let the tab go."""
        self.notes.save_draft()
        self.ctx.bus.changed.disconnect(self._changed)
