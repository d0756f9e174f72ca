"""Bookings the server refused (the slot was taken meanwhile): reason, alternatives, rebook.

Shown above the schedule while any refusal is open. Selecting a refused booking
offers its nearest free slots as buttons; one click rebooks it there.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop.services.scheduling import RejectedBooking, SlotView
from desktop.ui.context import UiContext
from desktop.ui.ops import Op
from desktop.ui.record_table import Column, RecordTableModel, make_table_view


def _when(moment: datetime | None) -> str:
    return moment.strftime("%a %d %b %H:%M") if moment else ""


COLUMNS: list[Column[RejectedBooking]] = [
    Column("Patient", lambda r: r.appointment.patient_name),
    Column("Wanted", lambda r: _when(r.appointment.start)),
    Column("Why", lambda r: r.reason),
]


class RefusedBookings(QWidget):
    """Lists refused bookings; `rebooked` fires after a successful one-step rebook."""

    rebooked = Signal()

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("refusedBookings")
        self.title = QLabel()
        self.title.setProperty("role", "warning")
        self.model: RecordTableModel[RejectedBooking] = RecordTableModel(COLUMNS, self)
        self.view = make_table_view(self.model, self)
        self.view.setObjectName("refusedTable")
        self.view.setMaximumHeight(120)
        self.alternatives = QHBoxLayout()
        self.buttons: list[QPushButton] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.view)
        layout.addLayout(self.alternatives)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._offer())
        self.hide()

    def show_refusals(self, refusals: list[RejectedBooking]) -> None:
        self.model.set_records(refusals)
        self.setVisible(bool(refusals))
        self.title.setText(
            f"{len(refusals)} booking(s) refused by the server: the slot was taken. "
            "Choose another time below."
        )
        if refusals:
            self.view.selectRow(0)
        self._offer()

    def selected(self) -> RejectedBooking | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.record(rows[0].row()) if rows else None

    def _offer(self) -> None:
        for button in self.buttons:
            self.alternatives.removeWidget(button)
            button.deleteLater()
        self.buttons = []
        refusal = self.selected()
        if refusal is None:
            return
        for slot in refusal.alternatives:
            button = QPushButton(f"Rebook {slot.start.strftime('%a %d %b %H:%M')}")
            button.setObjectName("rebookButton")
            button.clicked.connect(lambda _=False, s=slot, r=refusal: self._rebook(r, s))
            self.alternatives.addWidget(button)
            self.buttons.append(button)

    def _rebook(self, refusal: RejectedBooking, slot: SlotView) -> None:
        Op(
            self,
            lambda ws: ws.scheduling.rebook(refusal.conflict_id, slot.slot_id),
            name="rebook",
            announces=True,
        ).success(lambda _c: self.rebooked.emit()).run(self.ctx)
