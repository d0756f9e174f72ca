"""The sign-in screen's demo panel: only with `--demo-accounts`, live codes, fills the form."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QLabel, QPushButton
from pytestqt.qtbot import QtBot

from desktop.app import build_main_window
from desktop.services.demo_accounts import load_demo_accounts
from desktop.services.workstation import Workstation
from desktop.ui.context import UiContext
from desktop.ui.main_window import MainWindow
from shared_models.errors import ClinicError

pytestmark = pytest.mark.gui

WAIT = 10_000


def write_accounts(path: Path, secrets: dict[str, str]) -> Path:
    """A demo accounts file in the format `ehr-server demo` writes (see its module)."""
    roles = {"demo.physician": ["physician"], "demo.nurse": ["nurse"]}
    content = {
        "demo": True,
        "password": "Demo-Password-1!",
        "accounts": [
            {"username": name, "roles": roles[name], "totp_secret": secret}
            for name, secret in secrets.items()
        ],
    }
    path.write_text(json.dumps(content))
    return path


WindowFactory = Callable[[Path | None], MainWindow]


@pytest.fixture
def window_for(qtbot: QtBot, workstation: Workstation) -> Iterator[WindowFactory]:
    """The main window as `ehr-desktop` builds it, with or without `--demo-accounts`."""
    contexts: list[UiContext] = []

    def build(demo_accounts: Path | None) -> MainWindow:
        window, ctx = build_main_window(workstation, demo_accounts)
        contexts.append(ctx)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        return window

    yield build
    for ctx in contexts:
        ctx.shutdown()


def test_no_demo_panel_without_the_flag(window_for: WindowFactory) -> None:
    window = window_for(None)
    assert window.signin.demo_panel is None
    assert window.findChild(QFrame, "demoPanel") is None


def test_demo_panel_lists_accounts_with_live_codes_and_fills_the_form(
    qtbot: QtBot, window_for: WindowFactory, tmp_path: Path
) -> None:
    secrets = {"demo.physician": pyotp.random_base32(), "demo.nurse": pyotp.random_base32()}
    window = window_for(write_accounts(tmp_path / "demo-accounts.json", secrets))
    panel = window.signin.demo_panel
    assert panel is not None and panel.isVisible()
    assert window.findChild(QFrame, "demoPanel") is panel
    labels = " ".join(label.text() for label in panel.findChildren(QLabel))
    assert "Demo clinic" in labels and "Physician" in labels and "Nurse" in labels
    assert "never for real patients" in panel.countdown.text()
    assert "Demo-Password-1!" in panel.password_label.text()

    # Each code shown is the current one of that account's secret, refreshed every second.
    def shown_codes_are_current() -> bool:
        return all(
            pyotp.TOTP(secrets[name]).verify(label.text(), valid_window=1)
            for name, label in zip(secrets, panel.code_labels, strict=True)
        )

    assert shown_codes_are_current()
    for label in panel.code_labels:
        label.setText("000000")
    qtbot.waitUntil(shown_codes_are_current, timeout=WAIT)  # the timer's next tick

    nurse_button = panel.buttons[1]
    assert isinstance(nurse_button, QPushButton) and nurse_button.isEnabled()
    qtbot.mouseClick(nurse_button, Qt.MouseButton.LeftButton)  # type: ignore[no-untyped-call]
    signin = window.signin
    assert signin.username.text() == "demo.nurse"
    assert signin.password.text() == "Demo-Password-1!"
    assert pyotp.TOTP(secrets["demo.nurse"]).verify(signin.otp.text(), valid_window=1)
    assert not pyotp.TOTP(secrets["demo.physician"]).verify(signin.otp.text(), valid_window=1)
    assert "online" in signin.mode_label.text()


def test_a_file_that_is_not_a_demo_file_shows_a_clear_message(
    window_for: WindowFactory, tmp_path: Path
) -> None:
    not_demo = tmp_path / "accounts.json"
    not_demo.write_text(json.dumps({"accounts": []}))
    with pytest.raises(ClinicError):
        load_demo_accounts(not_demo)
    window = window_for(not_demo)
    assert window.signin.demo_panel is None
    assert "not a demo accounts file" in window.signin.error_label.text()


def test_the_sign_in_screen_does_not_wait_forever_on_a_profile_still_opening(
    qtbot: QtBot, fresh_profile: Any
) -> None:
    """As `ehr-desktop` starts: window first, then the profile opens on the store thread."""
    from desktop_store_helpers import FAST_KDF  # on the path the GUI conftest sets

    window, ctx = build_main_window(None)
    qtbot.addWidget(window)
    server = "http://127.0.0.1:9"
    ctx.runner.open_workstation(
        lambda: Workstation.open(fresh_profile.path, server, kdf=FAST_KDF), lambda _f: None
    )
    try:
        qtbot.waitUntil(lambda: server in window.signin.server_label.text(), timeout=WAIT)
    finally:
        ctx.shutdown()
        if ctx.runner.workstation is not None:
            ctx.runner.workstation.close()
