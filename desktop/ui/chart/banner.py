"""The patient banner: who this chart belongs to, always visible above every chart tab.

Allergies are in red when present; "No allergies recorded" (not "no known
allergies": nobody asserted that) when the list is empty. The sync line says
when something on this chart is not yet on the server or is in conflict.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from desktop.services.chart import Banner

SEX_LABELS = {"male": "Male", "female": "Female", "other": "Other", "unknown": "Sex unknown"}


def demographics_line(banner: Banner) -> str:
    parts = []
    if banner.age_years is not None:
        parts.append(f"{banner.age_years} y")
    parts.append(SEX_LABELS.get(banner.sex, "Sex not recorded"))
    if banner.birth_date:
        parts.append(f"born {banner.birth_date.strftime('%d %b %Y')}")
    parts.append(f"MRN {banner.mrn}" if banner.mrn else "no MRN")
    if banner.deceased:
        parts.append("DECEASED")
    return "  ·  ".join(parts)


def _restyle(widget: QWidget) -> None:
    widget.style().unpolish(widget)
    widget.style().polish(widget)


class PatientBanner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("patientBanner")
        self.name_label = QLabel()
        self.name_label.setObjectName("bannerName")
        self.details_label = QLabel()
        self.allergies_label = QLabel()
        self.allergies_label.setObjectName("bannerAllergies")
        self.allergies_label.setWordWrap(True)
        self.sync_label = QLabel()
        self.sync_label.setObjectName("bannerSync")
        self.sync_label.setProperty("role", "hint")
        left = QVBoxLayout()
        left.setSpacing(2)
        left.addWidget(self.name_label)
        left.addWidget(self.details_label)
        right = QVBoxLayout()
        right.setSpacing(2)
        right.addWidget(self.allergies_label)
        right.addWidget(self.sync_label)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addLayout(left, 3)
        layout.addLayout(right, 2)

    def set_banner(
        self, banner: Banner, *, pending: int = 0, conflicts: int = 0, newer: int = 0
    ) -> None:
        self.name_label.setText(banner.name or "Name not recorded")
        self.details_label.setText(demographics_line(banner))
        has = bool(banner.allergies)
        self.allergies_label.setText(
            "ALLERGIES: " + ", ".join(banner.allergies) if has else "No allergies recorded"
        )
        self.allergies_label.setProperty("hasAllergies", has)
        _restyle(self.allergies_label)
        notes = []
        if conflicts:
            notes.append(f"{conflicts} conflict(s) to review")
        if pending:
            notes.append(f"{pending} change(s) not yet on the server")
        if newer:
            notes.append(f"{newer} record(s) changed on the server since your edit: sync")
        self.sync_label.setText("  ·  ".join(notes))
        self.sync_label.setProperty(
            "role", "error" if conflicts else "pending" if pending else "hint"
        )
        _restyle(self.sync_label)
