"""Allergies: add one; never delete one, only mark it "entered in error" with a reason."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QDialog, QLineEdit, QWidget

from desktop.services.chart import AllergyItem
from desktop.services.clinical_edits import (
    CRITICALITIES,
    SEVERITIES,
    allergy_entered_in_error,
    new_allergy,
)
from desktop.ui.chart.edits import change_existing, save_new
from desktop.ui.chart.list_panel import ChartListPanel
from desktop.ui.context import UiContext
from desktop.ui.reason_dialog import ReasonDialog
from desktop.ui.record_table import Column

COLUMNS: list[Column[AllergyItem]] = [
    Column("Substance", lambda a: a.substance),
    Column("Reactions", lambda a: ", ".join(a.reactions)),
    Column("Criticality", lambda a: a.criticality.replace("-", " ")),
    Column("Status", lambda a: a.status or "recorded"),
]


def _choices(values: tuple[str, ...]) -> QComboBox:
    combo = QComboBox()
    combo.addItem("(not recorded)", "")
    for value in values:
        combo.addItem(value.replace("-", " ").capitalize(), value)
    return combo


class AllergiesPanel(ChartListPanel):
    def __init__(self, ctx: UiContext, patient_id: str, parent: QWidget | None = None) -> None:
        super().__init__(
            ctx, patient_id, COLUMNS, "Add allergy", parent,
            muted=lambda a: a.status in ("inactive", "resolved"),
        )  # fmt: skip
        self.substance = QLineEdit()
        self.substance.setObjectName("allergySubstance")
        self.substance.setPlaceholderText("e.g. Penicillin")
        self.reaction = QLineEdit()
        self.reaction.setObjectName("allergyReaction")
        self.reaction.setPlaceholderText("e.g. Hives")
        self.severity = _choices(SEVERITIES)
        self.criticality = _choices(CRITICALITIES)
        self.form.addRow("&Substance", self.substance)
        self.form.addRow("Reaction", self.reaction)
        self.form.addRow("Severity", self.severity)
        self.form.addRow("Criticality", self.criticality)
        self.error_button = self.add_action(
            "Entered in error…", self.mark_entered_in_error, danger=True
        )
        self.error_button.setObjectName("enteredInErrorButton")
        self.error_button.setToolTip(
            "Allergies are never deleted. Mark one recorded by mistake, with the reason."
        )

    def add(self) -> None:
        if not self.substance.text().strip():
            self.feedback.setText("Type the substance the patient is allergic to.")
            self.substance.setFocus()
            return
        resource = new_allergy(
            self.patient_id,
            self.substance.text(),
            reaction=self.reaction.text(),
            severity=self.severity.currentData(),
            criticality=self.criticality.currentData(),
            recorder=self.ctx.practitioner,
        )
        self.save(save_new(resource), "Allergy added.", self._reset)

    def _reset(self) -> None:
        self.substance.clear()
        self.reaction.clear()
        self.severity.setCurrentIndex(0)
        self.criticality.setCurrentIndex(0)

    def mark_entered_in_error(self) -> None:
        allergy = self.selected()
        if allergy is None:
            return
        dialog = ReasonDialog(
            "Allergy entered in error",
            f"Mark the allergy to {allergy.substance} as entered in error? It stays in the "
            "record, crossed out, with your reason. Why was it recorded by mistake?",
            "Mark entered in error",
            self,
        )
        dialog.setObjectName("allergyErrorDialog")
        self.reason_dialog = dialog
        dialog.finished.connect(lambda result: self._reason_given(dialog, allergy, result))
        dialog.open()

    def _reason_given(self, dialog: ReasonDialog, allergy: AllergyItem, result: int) -> None:
        if result != QDialog.DialogCode.Accepted:
            return
        reason = dialog.reason()
        fn = change_existing(
            "AllergyIntolerance", allergy.id, lambda r: allergy_entered_in_error(r, reason)
        )
        self.save(fn, "Allergy marked as entered in error.", lambda: None)
