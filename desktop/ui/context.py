"""What every screen is handed: the facade, the task runner, the error presenter, the bus.

Passed in explicitly (no module-global main window reached from everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject

from desktop.ui.errors import ErrorPresenter
from desktop.ui.ops import ChangeBus, TaskRunner


@dataclass
class UiContext:
    workstation: Any
    runner: TaskRunner
    errors: ErrorPresenter
    bus: ChangeBus
    #: The signed-in user (`SignInResult.user`), set by the sign-in screen.
    user: Any = None

    @property
    def practitioner(self) -> str | None:
        """`Practitioner/ID` of the signed-in user, for author/recorder fields."""
        return getattr(self.user, "practitioner", None)

    @classmethod
    def create(cls, workstation: Any, parent: QObject | None = None) -> UiContext:
        return cls(
            workstation=workstation,
            runner=TaskRunner(workstation, parent),
            errors=ErrorPresenter(parent),
            bus=ChangeBus(parent),
        )

    def shutdown(self) -> None:
        self.runner.shutdown(wait=True)
