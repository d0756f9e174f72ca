"""A chart list with an inline "add" form and actions on the selected row.

Problems, allergies and medications share this shape: the list on top, the
form to add one below it, a confirmation line after each save saying where the
change is (on this computer, waiting for the server).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.ui.context import UiContext
from desktop.ui.ops import Op
from desktop.ui.record_table import Column, RecordTableModel, make_table_view

SAVED_LOCALLY = "Saved on this computer. It goes to the server at the next sync."


class ChartListPanel(QWidget):
    def __init__(
        self,
        ctx: UiContext,
        patient_id: str,
        columns: Sequence[Column[Any]],
        add_title: str,
        parent: QWidget | None = None,
        *,
        muted: Callable[[Any], bool] | None = None,
    ) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.patient_id = patient_id
        self.model: RecordTableModel[Any] = RecordTableModel(columns, self, muted=muted)
        self.view = make_table_view(self.model, self)
        self.action_row = QHBoxLayout()
        self.action_row.addStretch(1)
        self.form = QFormLayout()
        self.row_buttons: list[QPushButton] = []
        self.add_button = QPushButton(add_title)
        self.add_button.setProperty("primary", True)
        self.add_button.clicked.connect(self.add)
        self.feedback = QLabel()
        self.feedback.setObjectName("feedback")
        self.feedback.setProperty("role", "hint")
        self.feedback.setWordWrap(True)
        box = QGroupBox(add_title)
        box.setMaximumWidth(box.fontMetrics().horizontalAdvance("M") * 48)
        box_layout = QVBoxLayout(box)
        box_layout.addLayout(self.form)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addStretch(1)
        box_layout.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 3)
        layout.addLayout(self.action_row)
        layout.addWidget(box)
        layout.addWidget(self.feedback)
        self.view.selectionModel().selectionChanged.connect(self._selection_changed)
        self.model.modelReset.connect(self._selection_changed)

    def add_action(
        self, text: str, slot: Callable[[], None], *, danger: bool = False
    ) -> QPushButton:
        """A button acting on the selected row (disabled while nothing is selected)."""
        button = QPushButton(text)
        button.setProperty("danger", danger)
        button.setEnabled(False)
        button.clicked.connect(slot)
        self.action_row.insertWidget(self.action_row.count() - 1, button)
        self.row_buttons.append(button)
        return button

    def set_records(self, records: Sequence[Any]) -> None:
        self.model.set_records(records)

    def selected(self) -> Any | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.record(rows[0].row()) if rows else None

    def _selection_changed(self, *_args: object) -> None:
        has = self.selected() is not None
        for button in self.row_buttons:
            button.setEnabled(has)

    def add(self) -> None:
        """Subclasses build the resource from the form and call `save`."""
        raise NotImplementedError

    def save(self, fn: Callable[[Any], Any], done: str, on_saved: Callable[[], None]) -> None:
        """Run a write op; on success show where the change is and reset the form."""
        self.add_button.setEnabled(False)

        def saved(_result: object) -> None:
            self.feedback.setText(f"{done} {SAVED_LOCALLY}")
            on_saved()

        Op(self, fn, name="chart-edit", announces=True).success(saved).finally_(
            lambda: self.add_button.setEnabled(True)
        ).run(self.ctx)
