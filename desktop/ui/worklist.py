"""My worklist: conflicts to review, changes the server refused, unsigned drafts.

Enter on a conflict opens the side-by-side review; on anything else, the chart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QModelIndex, Signal
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop.services.worklist import WorkItem
from desktop.ui.context import UiContext
from desktop.ui.ops import Op, touches
from desktop.ui.record_table import Column, RecordTableModel, make_table_view

if TYPE_CHECKING:
    from desktop.ui.conflict_review import ConflictReviewDialog

KIND_WORDS = {"conflict": "Conflict", "refused": "Not accepted", "draft": "Draft"}

COLUMNS: list[Column[WorkItem]] = [
    Column("Kind", lambda i: KIND_WORDS[i.kind]),
    Column("Patient", lambda i: i.patient_name),
    Column("What", lambda i: i.title),
    Column("Since", lambda i: i.since.astimezone().strftime("%d %b %H:%M")),
    Column("Details", lambda i: i.detail),
]


class Worklist(QWidget):
    open_patient = Signal(str)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.model: RecordTableModel[WorkItem] = RecordTableModel(COLUMNS, self)
        self.view = make_table_view(self.model, self)
        self.view.setObjectName("worklistView")
        self.view.activated.connect(self._activated)
        self.view.doubleClicked.connect(self._activated)
        self.hint = QLabel()
        self.hint.setProperty("role", "hint")
        self.review: ConflictReviewDialog | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        layout.addWidget(self.hint)
        ctx.bus.changed.connect(self._changed)

    def _changed(self, kinds: frozenset[str], _patient_id: str | None) -> None:
        if touches(kinds, "pending") or touches(kinds, "conflicts") or touches(kinds, "notes"):
            self.refresh()

    def refresh(self) -> None:
        Op(self, lambda ws: ws.worklist(), name="worklist").success(self.show_items).failure(
            lambda _e: None
        ).run(self.ctx)

    def show_items(self, items: list[WorkItem]) -> None:
        self.model.set_records(items)
        self.hint.setText(
            "Nothing waiting for you." if not items else "Enter opens the selected item."
        )

    def _activated(self, index: QModelIndex) -> None:
        item = self.model.record(index.row())
        if item.conflict_id:
            self.open_review(item.conflict_id)
        elif item.patient_id:
            self.open_patient.emit(item.patient_id)

    def open_review(self, conflict_id: str) -> None:
        def show(records: list[object]) -> None:
            record = next(
                (r for r in records if getattr(r, "conflict_id", None) == conflict_id), None
            )
            if record is None:
                self.refresh()
                return
            # Imported on first use: it loads the FHIR models (~1 s), which start-up
            # leaves to the store thread.
            from desktop.ui.conflict_review import ConflictReviewDialog

            self.review = ConflictReviewDialog(self.ctx, record, self)
            self.review.open()

        Op(self, lambda ws: ws.list_conflicts(), name="conflicts").success(show).run(self.ctx)
