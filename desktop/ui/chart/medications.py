"""Medications: prescribe (add), discontinue with a reason."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QLineEdit, QWidget

from desktop.services.chart import MedicationItem
from desktop.services.clinical_edits import discontinue_medication, new_medication
from desktop.ui.chart.edits import change_existing, save_new
from desktop.ui.chart.list_panel import ChartListPanel
from desktop.ui.context import UiContext
from desktop.ui.reason_dialog import ReasonDialog
from desktop.ui.record_table import Column

COLUMNS: list[Column[MedicationItem]] = [
    Column("Medication", lambda m: m.text),
    Column("Dosage", lambda m: m.dosage),
    Column("Since", lambda m: m.authored_on[:10]),
    Column("Status", lambda m: m.status),
]


class MedicationsPanel(ChartListPanel):
    def __init__(self, ctx: UiContext, patient_id: str, parent: QWidget | None = None) -> None:
        super().__init__(ctx, patient_id, COLUMNS, "Add medication", parent)
        self.medication = QLineEdit()
        self.medication.setObjectName("medicationText")
        self.medication.setPlaceholderText("e.g. Metformin 500 mg tablet")
        self.dosage = QLineEdit()
        self.dosage.setObjectName("medicationDosage")
        self.dosage.setPlaceholderText("e.g. 1 tablet twice daily with meals")
        self.form.addRow("&Medication", self.medication)
        self.form.addRow("Dosage", self.dosage)
        self.stop_button = self.add_action("Discontinue…", self.discontinue, danger=True)
        self.stop_button.setObjectName("discontinueButton")

    def add(self) -> None:
        if not self.medication.text().strip():
            self.feedback.setText("Type the medication first.")
            self.medication.setFocus()
            return
        resource = new_medication(
            self.patient_id,
            self.medication.text(),
            dosage=self.dosage.text(),
            requester=self.ctx.practitioner,
        )
        self.save(save_new(resource), "Medication added.", self._reset)

    def _reset(self) -> None:
        self.medication.clear()
        self.dosage.clear()

    def discontinue(self) -> None:
        medication = self.selected()
        if medication is None:
            return
        dialog = ReasonDialog(
            "Discontinue medication",
            f"Discontinue {medication.text}? Why is it being stopped?",
            "Discontinue",
            self,
        )
        self.reason_dialog = dialog
        dialog.finished.connect(lambda result: self._reason_given(dialog, medication, result))
        dialog.open()

    def _reason_given(self, dialog: ReasonDialog, medication: MedicationItem, result: int) -> None:
        if result != QDialog.DialogCode.Accepted:
            return
        reason = dialog.reason()
        fn = change_existing(
            medication.resource_type, medication.id, lambda r: discontinue_medication(r, reason)
        )
        self.save(fn, "Medication discontinued.", lambda: None)
