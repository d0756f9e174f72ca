"""Lock screen after idle time: whose session is locked, and the password to unlock.

The facade has already dropped the database key when this shows; the chart
windows are hidden behind it until the same user types their password again.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.ui.context import UiContext
from desktop.ui.errors import log_error, message_for
from desktop.ui.ops import Op


class LockScreen(QWidget):
    unlocked = Signal()
    sign_out = Signal()

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("lockScreen")
        title = QLabel("Session locked")
        title.setProperty("role", "title")
        self.whose = QLabel()
        self.whose.setObjectName("lockedUser")
        self.whose.setWordWrap(True)
        self.password = QLineEdit()
        self.password.setObjectName("unlockPassword")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.password.setPlaceholderText("Password")
        self.password.returnPressed.connect(self.unlock)
        self.error = QLabel()
        self.error.setObjectName("unlockError")
        self.error.setProperty("role", "error")
        self.error.setWordWrap(True)
        self.unlock_button = QPushButton("Unlock")
        self.unlock_button.setObjectName("unlockButton")
        self.unlock_button.setProperty("primary", True)
        self.unlock_button.clicked.connect(self.unlock)
        self.sign_out_button = QPushButton("Sign out (another user)")
        self.sign_out_button.clicked.connect(self.sign_out)
        buttons = QHBoxLayout()
        buttons.addWidget(self.unlock_button)
        buttons.addWidget(self.sign_out_button)
        card = QFrame()
        card.setObjectName("lockCard")
        inner = QVBoxLayout(card)
        inner.setContentsMargins(28, 24, 28, 24)
        inner.addWidget(title)
        inner.addWidget(self.whose)
        inner.addWidget(self.password)
        inner.addWidget(self.error)
        inner.addLayout(buttons)
        card.setMaximumWidth(card.fontMetrics().horizontalAdvance("M") * 34)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(card, 3)
        row.addStretch(1)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)

    def show_locked(self, username: str, reason: str) -> None:
        self.whose.setText(
            f"{reason} This session belongs to {username}. "
            "Patient information is hidden until they type their password."
        )
        self.error.clear()
        self.password.clear()
        self.password.setFocus()

    def unlock(self) -> None:
        password = self.password.text()
        if not password:
            self.error.setText("Type your password.")
            return
        self.unlock_button.setEnabled(False)
        Op(self, lambda ws: ws.unlock(password), name="unlock").success(
            lambda _r: self.unlocked.emit()
        ).failure(self._failed).finally_(lambda: self.unlock_button.setEnabled(True)).run(self.ctx)

    def _failed(self, error: BaseException) -> None:
        log_error(error)
        self.error.setText(message_for(error))
        self.password.clear()
        self.password.setFocus()
