"""Small choosers of the schedule screen: a patient to book, a slot to move to."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QLineEdit, QVBoxLayout, QWidget

from desktop.services.scheduling import SlotView
from desktop.ui.context import UiContext
from desktop.ui.patient_search import PatientSearch
from desktop.ui.record_table import Column, RecordTableModel, make_table_view


class PatientPickerDialog(QDialog):
    """Find the patient to book (the same type-ahead search as the home page)."""

    def __init__(self, ctx: UiContext, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName("patientPicker")
        self.patient_id: str | None = None
        self.search = PatientSearch(ctx, self)
        self.reason = QLineEdit()
        self.reason.setObjectName("bookingReason")
        self.reason.setPlaceholderText("Reason for the visit (optional)")
        self.reason.setMaxLength(200)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Reason, then find the patient and press Enter:"))
        layout.addWidget(self.reason)
        layout.addWidget(self.search, 1)
        layout.addWidget(buttons)
        self.search.open_patient.connect(self._chosen)
        self.resize(560, 420)

    def _chosen(self, patient_id: str) -> None:
        self.patient_id = patient_id
        self.accept()


SLOT_COLUMNS: list[Column[SlotView]] = [
    Column("Day", lambda s: s.start.strftime("%a %d %b")),
    Column("Time", lambda s: s.start.strftime("%H:%M %Z")),
]


class SlotPickerDialog(QDialog):
    """Choose one of the offered free slots (reschedule)."""

    def __init__(self, title: str, slots: list[SlotView], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.setObjectName("slotPicker")
        self.model: RecordTableModel[SlotView] = RecordTableModel(SLOT_COLUMNS, self)
        self.model.set_records(slots)
        self.view = make_table_view(self.model, self)
        self.view.setObjectName("slotChoices")
        self.view.empty_text = "No free slot in the next two weeks."
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.view.activated.connect(lambda _i: self.accept())
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addWidget(buttons)
        if slots:
            self.view.selectRow(0)
        self.resize(380, 360)

    def chosen(self) -> SlotView | None:
        rows = self.view.selectionModel().selectedRows()
        return self.model.record(rows[0].row()) if rows else None
