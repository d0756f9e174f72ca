"""Help ▸ Check for updates: the signed-update check, run off the GUI thread.

The check and the download go through `desktop.updates` (TUF): a build is only
reported as ready after every signature, expiry, version and hash check passed.
Installing it is IT's job (the Debian package), so the message says where the
verified file is and whom to tell.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QMessageBox, QWidget

from desktop import __version__
from desktop.config import load_config
from desktop.ui.context import UiContext
from desktop.ui.errors import log_error, message_for
from desktop.ui.ops import Op
from desktop.updates import AvailableUpdate, UpdateChecker, installed_checker

TITLE = "Check for updates"


def default_checker() -> UpdateChecker:
    return installed_checker(load_config())


class UpdateCheck:
    """Runs one check at a time and answers in a non-blocking message box."""

    def __init__(
        self,
        parent: QWidget,
        ctx: UiContext,
        make_checker: Callable[[], UpdateChecker] = default_checker,
    ) -> None:
        self._parent = parent
        self._ctx = ctx
        self._make_checker = make_checker
        self._running = False
        #: The last answer shown (kept so it stays open, and for tests).
        self.box: QMessageBox | None = None

    def run(self) -> None:
        if self._running:
            return
        self._running = True
        make_checker = self._make_checker

        def check(_workstation: Any) -> tuple[AvailableUpdate, Path] | None:
            return make_checker().check_and_download()

        Op(self._parent, check, name="check for updates", network=True).success(
            self._found
        ).failure(self._failed).finally_(self._done).run(self._ctx)

    def _done(self) -> None:
        self._running = False

    def _found(self, result: tuple[AvailableUpdate, Path] | None) -> None:
        if result is None:
            self._show(
                QMessageBox.Icon.Information,
                f"This workstation runs the latest version ({__version__}).",
            )
            return
        update, path = result
        self._show(
            QMessageBox.Icon.Information,
            f"Version {update.version} is available. It was downloaded and passed its "
            f"security checks (signed by your organisation).\n\nPlease tell IT support: "
            f"they install it. The verified file is {path}.",
        )

    def _failed(self, error: BaseException) -> None:
        log_error(error)
        self._show(QMessageBox.Icon.Warning, message_for(error))

    def _show(self, icon: QMessageBox.Icon, text: str) -> None:
        box = QMessageBox(icon, TITLE, text, QMessageBox.StandardButton.Ok, self._parent)
        box.setModal(False)
        box.open()
        self.box = box
