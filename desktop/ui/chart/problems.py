"""Problem list: add a problem, mark one resolved."""

from __future__ import annotations

from datetime import date

from PySide6.QtCore import QDate
from PySide6.QtWidgets import QCheckBox, QDateEdit, QHBoxLayout, QLineEdit, QWidget

from desktop.services.chart import ProblemItem
from desktop.services.clinical_edits import new_problem, resolve_problem
from desktop.ui.chart.edits import change_existing, save_new
from desktop.ui.chart.list_panel import ChartListPanel
from desktop.ui.context import UiContext
from desktop.ui.record_table import Column

COLUMNS: list[Column[ProblemItem]] = [
    Column("Problem", lambda p: p.text),
    Column("Onset", lambda p: p.onset[:10]),
    Column("Status", lambda p: p.status),
]


class ProblemsPanel(ChartListPanel):
    def __init__(self, ctx: UiContext, patient_id: str, parent: QWidget | None = None) -> None:
        super().__init__(ctx, patient_id, COLUMNS, "Add problem", parent)
        self.problem = QLineEdit()
        self.problem.setObjectName("problemText")
        self.problem.setPlaceholderText("e.g. Type 2 diabetes mellitus")
        self.onset_known = QCheckBox("Onset known")
        self.onset = QDateEdit(QDate.currentDate())
        self.onset.setCalendarPopup(True)
        self.onset.setMaximumDate(QDate.currentDate())
        self.onset.setEnabled(False)
        self.onset_known.toggled.connect(self.onset.setEnabled)
        onset_row = QHBoxLayout()
        onset_row.addWidget(self.onset_known)
        onset_row.addWidget(self.onset)
        onset_row.addStretch(1)
        self.form.addRow("&Problem", self.problem)
        self.form.addRow("Onset", onset_row)
        self.resolve_button = self.add_action("Mark resolved", self.resolve)
        self.resolve_button.setObjectName("resolveProblemButton")

    def add(self) -> None:
        if not self.problem.text().strip():
            self.feedback.setText("Type the problem first.")
            self.problem.setFocus()
            return
        onset = self.onset.date().toPython() if self.onset_known.isChecked() else None
        assert onset is None or isinstance(onset, date)
        resource = new_problem(self.patient_id, self.problem.text(), onset=onset)
        self.save(save_new(resource), "Problem added.", self.problem.clear)

    def resolve(self) -> None:
        problem = self.selected()
        if problem is not None:
            fn = change_existing("Condition", problem.id, resolve_problem)
            self.save(fn, "Problem marked resolved.", lambda: None)
