"""Sign-in: username, password, MFA code; says clearly whether it signs in online or offline.

With a code, it signs in online (the server checks password and code). If the
server cannot be reached, or no code is typed, it signs in offline with the
password alone, when this user's offline window allows it; the screen says
before the click whether that is possible and, if not, why.

In the demo clinic only (`ehr-desktop --demo-accounts FILE`, as `ehr-server
demo` starts it), a labelled panel below the card lists the demo accounts with
their live MFA code and a button that fills the form.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.services.demo_accounts import DemoAccount, seconds_left
from desktop.ui.context import UiContext
from desktop.ui.errors import log_error, message_for
from desktop.ui.ops import Op
from shared_models.errors import NetworkUnavailable

STATUS_DELAY_MS = 300


def _restyle(widget: QWidget) -> None:
    widget.style().unpolish(widget)
    widget.style().polish(widget)


class DemoAccountsPanel(QFrame):
    """Demo clinic only: the demo accounts, each with its current code and a fill button."""

    #: The account whose button was clicked.
    chosen = Signal(object)

    def __init__(self, accounts: Sequence[DemoAccount], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("demoPanel")
        self.accounts = list(accounts)
        title = QLabel("Demo clinic")
        title.setProperty("role", "heading")
        self.countdown = QLabel()
        self.countdown.setProperty("role", "hint")
        self.countdown.setWordWrap(True)
        password = self.accounts[0].password if self.accounts else ""
        self.password_label = QLabel(f"Password for all: {password}")
        self.password_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid = QGridLayout()
        grid.setHorizontalSpacing(16)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.code_labels: list[QLabel] = []
        self.buttons: list[QPushButton] = []
        for row, account in enumerate(self.accounts):
            who = QLabel(f"{account.username}<br><small>{account.role_label}</small>")
            code = QLabel()
            code.setObjectName("demoCode")
            code.setFont(mono)
            code.setAccessibleName(f"Current code for {account.username}")
            button = QPushButton("Use")
            button.setToolTip(f"Fill in {account.username}, the password and the current code")
            button.setObjectName(f"demoUse_{account.username}")
            button.clicked.connect(lambda _c=False, a=account: self.chosen.emit(a))
            for column, widget in enumerate((who, code, button)):
                grid.addWidget(widget, row, column)
            self.code_labels.append(code)
            self.buttons.append(button)
        grid.setColumnStretch(0, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 14, 20, 14)
        layout.addWidget(title)
        layout.addWidget(self.countdown)
        layout.addWidget(self.password_label)
        layout.addSpacing(4)
        layout.addLayout(grid)
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.refresh()

    def refresh(self) -> None:
        for account, label in zip(self.accounts, self.code_labels, strict=True):
            label.setText(account.current_code())
        self.countdown.setText(
            f"Sample accounts, never for real patients. Codes change in {seconds_left()} s."
        )


class SignInScreen(QWidget):
    #: Sign-in succeeded: the facade's SignInResult.
    signed_in = Signal(object)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("signInScreen")
        self.setWindowTitle("Clinic workstation: sign in")
        title = QLabel("Clinic workstation")
        title.setProperty("role", "title")
        self.server_label = QLabel()
        self.server_label.setProperty("role", "hint")
        # Deferred to the event loop: `ehr-desktop` queues the profile's opening on the
        # one store thread right after building this screen, and an op queued before
        # that would wait on the store thread for it forever.
        QTimer.singleShot(
            0,
            self,
            lambda: (
                Op(self, lambda ws: ws.server_url, name="server-url")
                .success(self._show_server)
                .failure(lambda _e: None)
                .run(ctx)
            ),
        )
        self.username = QLineEdit()
        self.username.setObjectName("username")
        self.password = QLineEdit()
        self.password.setObjectName("password")
        self.password.setEchoMode(QLineEdit.EchoMode.Password)
        self.otp = QLineEdit()
        self.otp.setObjectName("otp")
        self.otp.setPlaceholderText("6-digit code from your authenticator app")
        self.otp.setMaxLength(8)
        self.mode_label = QLabel()
        self.mode_label.setObjectName("modeLabel")
        self.mode_label.setWordWrap(True)
        self.error_label = QLabel()
        self.error_label.setObjectName("signInError")
        self.error_label.setProperty("role", "error")
        self.error_label.setWordWrap(True)
        self.sign_in_button = QPushButton("Sign in")
        self.sign_in_button.setObjectName("signInButton")
        self.sign_in_button.setProperty("primary", True)
        self.sign_in_button.setDefault(True)
        self.sign_in_button.clicked.connect(self.sign_in)
        for edit in (self.username, self.password, self.otp):
            edit.returnPressed.connect(self.sign_in)
        form = QFormLayout()
        form.addRow("&Username", self.username)
        form.addRow("&Password", self.password)
        form.addRow("&Code (MFA)", self.otp)
        card = QFrame()
        card.setObjectName("signInCard")
        card_layout = QVBoxLayout(card)
        card_layout.setContentsMargins(28, 24, 28, 24)
        card_layout.addWidget(title)
        card_layout.addWidget(self.server_label)
        card_layout.addSpacing(8)
        card_layout.addLayout(form)
        card_layout.addWidget(self.mode_label)
        card_layout.addWidget(self.error_label)
        card_layout.addWidget(self.sign_in_button)
        card.setMaximumWidth(card.fontMetrics().horizontalAdvance("M") * 36)
        #: The card, and below it the demo panel in the demo clinic.
        self.column = QVBoxLayout()
        self.column.addWidget(card)
        self.card = card
        row = QHBoxLayout()
        row.addStretch(1)
        row.addLayout(self.column, 3)
        row.addStretch(1)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)
        self.status_timer = QTimer(self)
        self.status_timer.setSingleShot(True)
        self.status_timer.setInterval(STATUS_DELAY_MS)
        self.status_timer.timeout.connect(self.check_offline_status)
        self.username.textEdited.connect(lambda _t: self.status_timer.start())
        self.otp.textEdited.connect(lambda _t: self._update_mode())
        self.offline_status: Any = None
        self.demo_panel: DemoAccountsPanel | None = None
        self._update_mode()
        self.username.setFocus(Qt.FocusReason.OtherFocusReason)

    def show_demo_accounts(self, accounts: Sequence[DemoAccount]) -> None:
        """Demo clinic only: list the demo accounts below the card (see DemoAccountsPanel)."""
        self.demo_panel = DemoAccountsPanel(accounts)
        self.demo_panel.chosen.connect(self.fill_demo_account)
        self.demo_panel.setMaximumWidth(self.card.maximumWidth())
        self.column.addSpacing(16)
        self.column.addWidget(self.demo_panel)

    def fill_demo_account(self, account: DemoAccount) -> None:
        self.username.setText(account.username)
        self.password.setText(account.password)
        self.otp.setText(account.current_code())
        self.error_label.clear()
        self._update_mode()
        self.sign_in_button.setFocus()

    def _show_server(self, url: str | None) -> None:
        self.server_label.setText(f"Server: {url}" if url else "No server configured")

    # -- what the click will do --------------------------------------------------

    def check_offline_status(self) -> None:
        user = self.username.text().strip()
        if not user:
            self.offline_status = None
            self._update_mode()
            return
        Op(self, lambda ws: ws.offline_sign_in_status(user), name="offline-status").success(
            self._got_status
        ).failure(lambda _e: None).run(self.ctx)

    def _got_status(self, status: Any) -> None:
        self.offline_status = status
        self._update_mode()

    def _update_mode(self) -> None:
        has_code = bool(self.otp.text().strip())
        status = self.offline_status
        if has_code:
            text, online = "Signs in online: the server checks your password and code.", True
        elif status is not None and status.possible:
            until = (
                f" (possible until {status.valid_until:%d %b %H:%M})" if status.valid_until else ""
            )
            text, online = (
                f"No code: signs in offline with your password{until}. "
                "Changes are kept on this computer and sent at the next sync.",
                False,
            )
        elif status is not None:
            text, online = f"Offline sign-in is not possible: {status.reason}", False
        else:
            text, online = "Type your username, password and the code from your app.", True
        self.mode_label.setText(text)
        self.mode_label.setProperty("online", "true" if online else "false")
        _restyle(self.mode_label)

    # -- signing in ----------------------------------------------------------------

    def sign_in(self) -> None:
        user, password, code = (
            self.username.text().strip(),
            self.password.text(),
            self.otp.text().strip(),
        )
        if not user or not password:
            self.error_label.setText("Type your username and password.")
            (self.username if not user else self.password).setFocus()
            return
        self.error_label.clear()
        self.sign_in_button.setEnabled(False)
        self.sign_in_button.setText("Signing in…")
        if code:
            Op(self, lambda ws: ws.sign_in_online(user, password, code), network=True).success(
                self._done
            ).failure(lambda e: self._online_failed(e, user, password)).run(self.ctx)
        else:
            self._offline(user, password)

    def _online_failed(self, error: BaseException, user: str, password: str) -> None:
        status = self.offline_status
        if isinstance(error, NetworkUnavailable) and status is not None and status.possible:
            self.mode_label.setText("The server cannot be reached: signing in offline.")
            self._offline(user, password)
            return
        self._failed(error)

    def _offline(self, user: str, password: str) -> None:
        Op(self, lambda ws: ws.sign_in_offline(user, password)).success(self._done).failure(
            self._failed
        ).run(self.ctx)

    def _failed(self, error: BaseException) -> None:
        log_error(error)
        self.sign_in_button.setEnabled(True)
        self.sign_in_button.setText("Sign in")
        self.error_label.setText(message_for(error))
        self.password.clear()
        self.otp.clear()
        self.password.setFocus()

    def _done(self, result: Any) -> None:
        self.password.clear()
        self.otp.clear()
        self.sign_in_button.setEnabled(True)
        self.sign_in_button.setText("Sign in")
        self.ctx.user = result.user
        self.signed_in.emit(result)
