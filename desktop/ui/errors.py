"""The one place the GUI shows an error to a person.

A `ClinicError` carries a `user_message` written for a clinician (what happened,
what to do next) and, for validation, the list of what is wrong. Anything else
is a bug: the person sees a calm generic message, the log gets the exception
type and stack frames, never the exception text (it may hold patient data).
"""

from __future__ import annotations

import logging
import traceback

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox, QWidget

from shared_models.errors import ClinicError, NetworkUnavailable, ValidationFailed

log = logging.getLogger(__name__)

UNEXPECTED = (
    "Something went wrong and the action was not completed. "
    "Your saved work is safe. Please try again; if it happens again, call IT support."
)


def message_for(error: BaseException) -> str:
    """The words a clinician reads for this error."""
    if isinstance(error, ValidationFailed) and error.issues:
        lines = [error.user_message, ""]
        lines += [f"• {text}" for _where, text in error.issues]
        return "\n".join(lines)
    if isinstance(error, ClinicError):
        return error.user_message
    return UNEXPECTED


def log_error(error: BaseException) -> None:
    """Technical detail for the log: type, help topic and stack, no message or source text."""
    # Frame locations only: source lines and the message can hold patient data.
    stack = "\n".join(
        f"  {frame.filename}:{frame.lineno} in {frame.name}"
        for frame in traceback.extract_tb(error.__traceback__)
    )
    if isinstance(error, ClinicError):
        log.info("%s (help: %s)\n%s", type(error).__name__, error.help_topic, stack)
    else:
        log.error("unexpected %s\n%s", type(error).__name__, stack)


class ErrorPresenter(QObject):
    """Shows errors in a window-modal, non-blocking message box.

    Non-blocking (`open()`, not `exec()`): the GUI thread keeps painting and a
    test can read the box and close it like a user would.
    """

    shown = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.last_box: QMessageBox | None = None

    def show(self, parent: QWidget | None, error: BaseException) -> QMessageBox:
        log_error(error)
        text = message_for(error)
        icon = (
            QMessageBox.Icon.Information
            if isinstance(error, NetworkUnavailable)
            else QMessageBox.Icon.Warning
        )
        box = QMessageBox(icon, "Clinic workstation", text, QMessageBox.StandardButton.Ok, parent)
        box.setObjectName("errorBox")
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        if isinstance(error, ClinicError):
            box.setInformativeText(f"Help topic: {error.help_topic}")
        box.open()
        self.last_box = box
        self.shown.emit(text)
        return box
