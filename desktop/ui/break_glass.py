"""Break the glass: the reason comes first, and the screen says the access is recorded.

Opens a chart of a patient outside my locations (an emergency, a transfer).
The Open button stays disabled until a reason of at least 10 characters is
typed; the notice says plainly that the reason, the user and every access are
recorded and reviewed.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.ui.context import UiContext
from desktop.ui.errors import log_error, message_for
from desktop.ui.ops import Op

MIN_REASON = 10


class BreakGlassDialog(QDialog):
    #: The chart was fetched: open it (patient id).
    opened = Signal(str)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("breakGlass")
        self.setWindowTitle("Open a chart outside your locations")
        notice = QFrame()
        notice.setObjectName("breakGlassNotice")
        text = QLabel(
            "<b>This access is recorded.</b> You are opening the chart of a patient who is "
            "not cared for at your locations. Your name, the time, your reason and everything "
            "you open are recorded and reviewed by the privacy officer. Use this only when "
            "the patient's care needs it now."
        )
        text.setWordWrap(True)
        text.setObjectName("breakGlassText")
        self.notice = text
        QVBoxLayout(notice).addWidget(text)
        self.reason = QPlainTextEdit()
        self.reason.setObjectName("breakGlassReason")
        self.reason.setPlaceholderText("Reason (required), e.g. Patient transferred to our ED")
        self.reason.setTabChangesFocus(True)
        self.patient = QLineEdit()
        self.patient.setObjectName("breakGlassPatient")
        self.patient.setPlaceholderText("Patient id from the referral or the other site")
        self.error = QLabel()
        self.error.setProperty("role", "error")
        self.error.setWordWrap(True)
        self.open_button = QPushButton("Open chart and record access")
        self.open_button.setObjectName("breakGlassOpen")
        self.open_button.setProperty("danger", True)
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self.open_chart)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        form = QFormLayout()
        form.addRow("&Reason", self.reason)
        form.addRow("&Patient", self.patient)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.open_button)
        layout = QVBoxLayout(self)
        layout.addWidget(notice)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addLayout(buttons)
        self.reason.textChanged.connect(self._check)
        self.patient.textChanged.connect(self._check)
        self.reason.setFocus()
        self.resize(560, 340)

    def _check(self) -> None:
        reason_ok = len(self.reason.toPlainText().strip()) >= MIN_REASON
        self.open_button.setEnabled(reason_ok and bool(self.patient.text().strip()))
        if not reason_ok and self.reason.toPlainText().strip():
            self.error.setText(f"Give a reason of at least {MIN_REASON} characters.")
        else:
            self.error.clear()

    def open_chart(self) -> None:
        reason, patient_id = self.reason.toPlainText().strip(), self.patient.text().strip()
        self.open_button.setEnabled(False)
        Op(self, lambda ws: ws.break_glass(patient_id, reason), network=True).success(
            self._opened
        ).failure(self._failed).run(self.ctx)

    def _opened(self, grant: Any) -> None:
        self.opened.emit(grant.patient_id)
        self.accept()

    def _failed(self, error: BaseException) -> None:
        log_error(error)
        self.error.setText(message_for(error))
        self._check()
