"""Entry point of the GUI: `ehr-desktop [--server URL] [--profile DIR]` (via desktop.cli).

Sets up Qt for 100-200 % displays (fractional scale factors passed through, not
rounded), the Fusion style with the calm style sheet from `resources/`, and
shows the sign-in screen at once; the profile is opened (and the facade, with
its FHIR models and HTTP client, imported) on the store thread meanwhile.
Everything that can block runs through the ops' worker threads.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QMessageBox

from desktop.cli import default_profile_dir
from desktop.config import load_config, resources_dir
from desktop.ui.context import UiContext
from desktop.ui.errors import message_for
from desktop.ui.main_window import MainWindow
from shared_models.errors import ClinicError

log = logging.getLogger(__name__)


def create_application(argv: Sequence[str] = ()) -> QApplication:
    """The QApplication, styled; reuses the running one (tests, benchmarks)."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        app = existing
    else:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
        )
        app = QApplication(["ehr-desktop", *argv])
    app.setApplicationName("ehr-desktop")
    app.setApplicationDisplayName("Clinic workstation")
    app.setStyle("Fusion")
    app.setStyleSheet(load_style_sheet())
    return app


def load_style_sheet() -> str:
    path = resources_dir() / "style.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        log.warning("style sheet missing: %s", path.name)
        return ""


def build_main_window(
    workstation: Any, demo_accounts: Path | None = None
) -> tuple[MainWindow, UiContext]:
    """The main window; with `demo_accounts` (demo clinic only) its sign-in lists them."""
    ctx = UiContext.create(workstation)
    window = MainWindow(ctx)
    if demo_accounts is not None:
        _show_demo_accounts(window, demo_accounts)
    return window, ctx


def _show_demo_accounts(window: MainWindow, path: Path) -> None:
    from desktop.services.demo_accounts import load_demo_accounts

    try:
        window.signin.show_demo_accounts(load_demo_accounts(path))
    except ClinicError as error:
        log.warning("demo accounts not shown: %s", error.detail)
        window.signin.error_label.setText(error.user_message)


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ehr-desktop", add_help=False)
    parser.add_argument("--server")
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--demo-accounts", type=Path)
    args, _unknown = parser.parse_known_args(list(argv))
    return args


def _opener(args: argparse.Namespace) -> Callable[[], Any]:
    def open_profile() -> Any:
        # Imported here, on the store thread: the sign-in window is already showing.
        from desktop.services.workstation import Workstation

        server_url = args.server or load_config().server_url
        return Workstation.open(args.profile or default_profile_dir(), server_url)

    return open_profile


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    app = create_application()
    # --demo-accounts: demo clinic only (`ehr-server demo` passes its accounts file).
    window, ctx = build_main_window(None, args.demo_accounts)
    window.show()

    def opened(future: Future[Any]) -> None:
        error = future.exception()
        if error is not None:  # e.g. the profile is open in another window
            QMessageBox.critical(window, "Clinic workstation", message_for(error))
            app.exit(3)

    ctx.runner.open_workstation(_opener(args), opened)
    try:
        return int(app.exec())
    finally:
        ctx.shutdown()
        if ctx.runner.workstation is not None:
            ctx.runner.workstation.close()
