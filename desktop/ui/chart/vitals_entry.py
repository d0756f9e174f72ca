"""Vitals entry form: one field per vital sign with its unit, checked before saving.

The checks are `shared_models.vitals.check_vitals`; the form only shows them:
the bad field turns red, the message under the form says what is wrong and what
to type instead, and focus goes to the first bad field. Nothing is sent to the
facade until every check passes.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import QDateTime, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDateTimeEdit,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from shared_models.vitals import VITAL_ORDER, VITAL_SIGNS, VitalProblem, check_vitals, parse_vital


def _restyle(widget: QWidget) -> None:
    widget.style().unpolish(widget)
    widget.style().polish(widget)


class VitalsEntryForm(QWidget):
    """Emits `submitted(values, effective)` with plausible readings only."""

    submitted = Signal(dict, datetime)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fields: dict[str, QLineEdit] = {}
        form = QFormLayout()
        self.when = QDateTimeEdit(QDateTime.currentDateTime())
        self.when.setDisplayFormat("dd MMM yyyy HH:mm")
        self.when.setCalendarPopup(True)
        self.when.setMaximumDateTime(QDateTime.currentDateTime().addSecs(300))
        form.addRow("Taken at", self.when)
        for key in VITAL_ORDER:
            sign = VITAL_SIGNS[key]
            edit = QLineEdit()
            edit.setObjectName(f"vital_{key}")
            edit.setPlaceholderText(f"e.g. {sign.example}")
            edit.setAccessibleName(f"{sign.label} in {sign.unit_label}")
            edit.setMaximumWidth(edit.fontMetrics().horizontalAdvance("0") * 14)
            edit.textEdited.connect(lambda _text, k=key: self._clear_mark(k))
            row = QHBoxLayout()
            row.addWidget(edit)
            row.addWidget(QLabel(sign.unit_label))
            row.addStretch(1)
            label = QLabel(f"&{sign.label}" if key == "systolic" else sign.label)
            label.setBuddy(edit)
            form.addRow(label, row)
            self.fields[key] = edit
        self.problems_label = QLabel()
        self.problems_label.setObjectName("vitalsProblems")
        self.problems_label.setProperty("role", "error")
        self.problems_label.setWordWrap(True)
        self.problems_label.hide()
        self.save_button = QPushButton("Save vitals")
        self.save_button.setProperty("primary", True)
        self.save_button.setToolTip("Save vitals (Ctrl+S)")
        self.save_button.clicked.connect(self.submit)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.clear_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        heading = QLabel("Record vitals")
        heading.setProperty("role", "heading")
        layout.addWidget(heading)
        layout.addLayout(form)
        layout.addWidget(self.problems_label)
        layout.addLayout(buttons)
        layout.addStretch(1)
        save = QShortcut(QKeySequence.StandardKey.Save, self)
        save.activated.connect(self.submit)
        for edit in self.fields.values():
            edit.returnPressed.connect(self.submit)

    def values(self) -> tuple[dict[str, float | None], list[VitalProblem]]:
        """What is typed, and every problem with it (typing and plausibility)."""
        values: dict[str, float | None] = {}
        problems: list[VitalProblem] = []
        for key, edit in self.fields.items():
            value, problem = parse_vital(key, edit.text())
            values[key] = value
            if problem:
                problems.append(problem)
        if not problems:
            problems = check_vitals(values)
        return values, problems

    def submit(self) -> None:
        values, problems = self.values()
        self.show_problems(problems)
        if problems:
            return
        effective = self.when.dateTime().toPython()
        assert isinstance(effective, datetime)
        self.submitted.emit(values, effective.astimezone())

    def show_problems(self, problems: list[VitalProblem]) -> None:
        bad = {p.key for p in problems if p.key}
        for key, edit in self.fields.items():
            edit.setProperty("invalid", key in bad)
            _restyle(edit)
        if not problems:
            self.problems_label.hide()
            self.problems_label.clear()
            return
        self.problems_label.setProperty("role", "error")
        _restyle(self.problems_label)
        self.problems_label.setText("\n".join(f"• {p.message}" for p in problems))
        self.problems_label.show()
        first = next((k for k in VITAL_ORDER if k in bad), None)
        if first:
            self.fields[first].setFocus()
            self.fields[first].selectAll()

    def show_saved(self, text: str) -> None:
        """Clear the form and confirm, in green, where the readings went."""
        self.clear()
        self.problems_label.setProperty("role", "ok")
        _restyle(self.problems_label)
        self.problems_label.setText(text)
        self.problems_label.show()

    def _clear_mark(self, key: str) -> None:
        edit = self.fields[key]
        if edit.property("invalid"):
            edit.setProperty("invalid", False)
            _restyle(edit)

    def clear(self) -> None:
        for edit in self.fields.values():
            edit.clear()
        self.show_problems([])
        now = QDateTime.currentDateTime()
        self.when.setMaximumDateTime(now.addSecs(300))
        self.when.setDateTime(now)
