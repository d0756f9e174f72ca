"""One patient's chart: the banner on top, always; the chart sections in tabs below.

Every piece of this tab holds data of ONE patient (`patient_id`), so two open
charts never mix. The chart reloads itself when a write or a sync touches this
patient (the change bus), at most one load at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from PySide6.QtCore import Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from desktop.services.chart import ChartView
from desktop.services.vitals import FlowsheetColumn, build_flowsheet
from desktop.ui.chart.allergies import AllergiesPanel
from desktop.ui.chart.banner import PatientBanner
from desktop.ui.chart.list_panel import ChartListPanel
from desktop.ui.chart.medications import MedicationsPanel
from desktop.ui.chart.notes import NotesPanel
from desktop.ui.chart.problems import ProblemsPanel
from desktop.ui.chart.summary import SummaryTab
from desktop.ui.chart.vitals_tab import VitalsTab
from desktop.ui.context import UiContext
from desktop.ui.ops import Op

SECTIONS = ("Summary", "Vitals", "Problems", "Allergies", "Medications", "Notes")


def _load(patient_id: str, with_vitals: bool) -> Any:
    """The chart; the vitals flowsheet only when the Vitals section exists (most of the cost)."""

    def fn(ws: Any) -> tuple[ChartView, list[FlowsheetColumn] | None]:
        chart = ws.load_chart(patient_id, vitals=with_vitals)
        return chart, build_flowsheet(chart.vitals) if with_vitals else None

    return fn


class ChartTab(QWidget):
    """Sections are built when first shown: opening a chart paints the banner and the
    summary only, once, with the data. A section built later is filled from the chart
    already loaded. The vital-sign readings load only once the Vitals section exists
    (the summary has their latest values without them)."""

    #: Emitted after the chart's widgets show freshly loaded data.
    loaded = Signal()

    def __init__(self, ctx: UiContext, patient_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.patient_id = patient_id
        self.chart: ChartView | None = None
        #: None until a load with the vital-sign readings (the Vitals section asks for it).
        self.flowsheet: list[FlowsheetColumn] | None = None
        self.title = "Loading…"
        self._loading = False
        self._stale = False
        self._built: dict[str, QWidget] = {}
        self._pages: dict[str, QVBoxLayout] = {}
        self.banner = PatientBanner()
        self.loading_label = QLabel("Opening the chart…")
        self.loading_label.setProperty("role", "hint")
        self.sections = QTabWidget()
        self.sections.setObjectName("chartSections")
        for number, name in enumerate(SECTIONS, start=1):
            page = QWidget()
            self._pages[name] = QVBoxLayout(page)
            self._pages[name].setContentsMargins(0, 0, 0, 0)
            self.sections.addTab(page, f"&{number} {name}")
            shortcut = QShortcut(QKeySequence(f"Alt+{number}"), self)
            shortcut.activated.connect(lambda i=number - 1: self.sections.setCurrentIndex(i))
        self.sections.currentChanged.connect(lambda i: self.section(SECTIONS[i]))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.banner)
        layout.addWidget(self.loading_label)
        layout.addWidget(self.sections, 1)
        # Banner and sections appear with the data: built, filled, laid out and painted once.
        self.banner.hide()
        self.sections.hide()
        ctx.bus.changed.connect(self._changed)
        self.reload()

    # -- sections, built on first use ----------------------------------------------

    def _build(self, name: str) -> QWidget:
        ctx, pid = self.ctx, self.patient_id
        factories: dict[str, Callable[[], QWidget]] = {
            "Summary": SummaryTab,
            "Vitals": lambda: VitalsTab(ctx, pid),
            "Problems": lambda: ProblemsPanel(ctx, pid),
            "Allergies": lambda: AllergiesPanel(ctx, pid),
            "Medications": lambda: MedicationsPanel(ctx, pid),
            "Notes": lambda: NotesPanel(ctx, pid),
        }
        return factories[name]()

    def section(self, name: str) -> QWidget:
        if name not in self._built:
            widget = self._build(name)
            self._built[name] = widget
            self._pages[name].addWidget(widget)
            widget.show()  # a child added to a visible parent stays hidden otherwise
            if self.chart is not None:
                self._fill(name, widget)
            if name == "Vitals" and self.flowsheet is None:
                self.reload()
        return self._built[name]

    def _fill(self, name: str, widget: QWidget) -> None:
        chart = self.chart
        assert chart is not None
        if isinstance(widget, SummaryTab):
            widget.set_chart(chart)
        elif isinstance(widget, VitalsTab):
            if self.flowsheet is not None:
                widget.set_flowsheet(self.flowsheet)
        elif isinstance(widget, NotesPanel):
            widget.set_notes(chart.notes)
        elif isinstance(widget, ChartListPanel):
            records = {"Problems": chart.problems, "Allergies": chart.allergies,
                       "Medications": chart.medications}[name]  # fmt: skip
            widget.set_records(records)

    def show_section(self, name: str) -> QWidget:
        self.sections.setCurrentIndex(SECTIONS.index(name))
        return self.section(name)

    def current_section(self) -> QWidget:
        return self.section(SECTIONS[self.sections.currentIndex()])

    @property
    def summary(self) -> SummaryTab:
        return cast(SummaryTab, self.section("Summary"))

    @property
    def vitals(self) -> VitalsTab:
        return cast(VitalsTab, self.section("Vitals"))

    @property
    def problems(self) -> ProblemsPanel:
        return cast(ProblemsPanel, self.section("Problems"))

    @property
    def allergies(self) -> AllergiesPanel:
        return cast(AllergiesPanel, self.section("Allergies"))

    @property
    def medications(self) -> MedicationsPanel:
        return cast(MedicationsPanel, self.section("Medications"))

    @property
    def notes(self) -> NotesPanel:
        return cast(NotesPanel, self.section("Notes"))

    # -- loading -------------------------------------------------------------------

    def reload(self) -> None:
        if self._loading:
            self._stale = True
            return
        self._loading = True
        with_vitals = "Vitals" in self._built
        Op(self, _load(self.patient_id, with_vitals), name="load-chart").success(
            self._show
        ).failure(self._failed).finally_(self._load_done).run(self.ctx)

    def _load_done(self) -> None:
        self._loading = False
        if self._stale:
            self._stale = False
            self.reload()

    def _failed(self, error: BaseException) -> None:
        self.loading_label.setText("The chart could not be opened.")
        self.ctx.errors.show(self, error)

    def _show(self, result: tuple[ChartView, list[FlowsheetColumn] | None]) -> None:
        chart, flowsheet = result
        self.chart = chart
        if flowsheet is not None:
            self.flowsheet = flowsheet
        self.title = chart.banner.name or "Unnamed patient"
        self.banner.set_banner(
            chart.banner,
            pending=len(chart.pending_ids),
            conflicts=len(chart.conflict_ids),
            newer=len(chart.newer_on_server_ids),
        )
        for name, widget in self._built.items():
            self._fill(name, widget)
        if self.sections.isHidden():
            self.current_section()  # the summary, unless a section key was pressed meanwhile
            self.loading_label.hide()
            self.banner.show()
            self.sections.show()
        self.loaded.emit()

    def _changed(self, kinds: frozenset[str], patient_id: str | None) -> None:
        if patient_id in (None, self.patient_id) and kinds:
            self.reload()

    def close_chart(self) -> None:
        """Keep a draft being written, then let the tab go."""
        notes = self._built.get("Notes")
        if isinstance(notes, NotesPanel):
            notes.save_draft()
        self.ctx.bus.changed.disconnect(self._changed)
