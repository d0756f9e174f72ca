"""Vitals tab: the flowsheet (date columns), trend charts, and the entry form."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QHeaderView, QLabel, QSplitter, QVBoxLayout, QWidget

from desktop.services.vitals import FlowsheetColumn, trend_series
from desktop.ui.chart.edits import save_all_new
from desktop.ui.chart.flowsheet import VitalsFlowsheetModel
from desktop.ui.chart.trend_chart import Series, TrendChart
from desktop.ui.chart.vitals_entry import VitalsEntryForm
from desktop.ui.context import UiContext
from desktop.ui.ops import Op
from desktop.ui.record_table import make_table_view
from shared_models.vitals import VITAL_SIGNS, vitals_observations

#: (chart title, unit, series keys) of the trend charts.
TRENDS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("Blood pressure", "mmHg", ("systolic", "diastolic")),
    ("Heart rate", "/min", ("heart_rate",)),
    ("Temperature", "°C", ("temperature",)),
    ("SpO2", "%", ("spo2",)),
    ("Weight", "kg", ("weight",)),
)


class VitalsTab(QWidget):
    def __init__(self, ctx: UiContext, patient_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.patient_id = patient_id
        self.model = VitalsFlowsheetModel(self)
        self.flowsheet = make_table_view(self.model, self)
        self.flowsheet.setObjectName("flowsheet")
        self.flowsheet.verticalHeader().show()
        # Fixed column widths: sizing ~1,000 date columns to their contents costs seconds.
        header = self.flowsheet.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header.setDefaultSectionSize(self.fontMetrics().horizontalAdvance("00 Mmm 0000") + 16)
        self.charts: dict[str, TrendChart] = {}
        charts = QWidget()
        grid = QGridLayout(charts)
        for position, (title, unit, _keys) in enumerate(TRENDS):
            chart = TrendChart(title, unit)
            self.charts[title] = chart
            grid.addWidget(chart, position // 3, position % 3)
        #: Shown until the readings arrive (they load when this section is first shown).
        self.loading_label = QLabel("Loading the vital signs…")
        self.loading_label.setProperty("role", "hint")
        self.form = VitalsEntryForm()
        self.form.submitted.connect(self.save)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.flowsheet)
        left.addWidget(charts)
        left.setSizes([260, 420])
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.form)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.loading_label)
        layout.addWidget(splitter)

    @property
    def has_data(self) -> bool:
        """The flowsheet and trends show the chart's readings (not waiting for them)."""
        return self.loading_label.isHidden()

    def set_flowsheet(self, columns: list[FlowsheetColumn]) -> None:
        self.loading_label.hide()
        self.model.set_columns(columns)
        for title, _unit, keys in TRENDS:
            self.charts[title].set_series(
                [
                    Series(VITAL_SIGNS[k].label.removesuffix(" BP"), trend_series(columns, k))
                    for k in keys
                ]
            )

    def save(self, values: dict[str, float | None], effective: datetime) -> None:
        observations = vitals_observations(
            self.patient_id, values, effective, performer=self.ctx.practitioner
        )
        self.form.save_button.setEnabled(False)

        def saved(_result: object) -> None:
            self.form.show_saved(
                "Vitals saved on this computer. They go to the server at the next sync."
            )

        Op(self, save_all_new(observations), name="save-vitals", announces=True).success(
            saved
        ).finally_(lambda: self.form.save_button.setEnabled(True)).run(self.ctx)
