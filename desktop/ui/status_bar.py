"""The status bar: online or offline, changes waiting, last sync, conflicts, Sync (F5).

Being offline is a normal state, not an error: a failed sync because the server
cannot be reached only turns the bar amber and says work continues; other sync
errors go to the error presenter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QStatusBar, QWidget

from desktop.ui.context import UiContext
from desktop.ui.ops import Op, touches
from shared_models.errors import NetworkUnavailable

REFRESH_MS = 15_000


def _restyle(widget: QWidget) -> None:
    widget.style().unpolish(widget)
    widget.style().polish(widget)


def last_sync_words(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "Never synchronised"
    now = now or datetime.now(when.tzinfo)
    minutes = int((now - when).total_seconds() // 60)
    if minutes < 1:
        return "Synced just now"
    if minutes < 60:
        return f"Synced {minutes} min ago"
    local = when.astimezone()
    if local.date() == now.astimezone().date():
        return f"Synced today {local:%H:%M}"
    return f"Synced {local:%d %b %H:%M}"


class SyncStatusBar(QStatusBar):
    #: The conflicts badge was clicked: show the worklist.
    show_conflicts = Signal()
    #: A sync finished (True: it reached the server).
    sync_finished = Signal(bool)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.syncing = False
        self.connection = QLabel("Not connected yet")
        self.connection.setObjectName("connectionLabel")
        self.pending = QLabel()
        self.pending.setObjectName("pendingLabel")
        self.last_sync = QLabel()
        self.last_sync.setObjectName("lastSyncLabel")
        self.conflicts = QPushButton()
        self.conflicts.setObjectName("conflictsBadge")
        self.conflicts.setFlat(True)
        self.conflicts.clicked.connect(self.show_conflicts)
        self.sync_button = QPushButton("Sync now (F5)")
        self.sync_button.setObjectName("syncButton")
        self.sync_button.clicked.connect(self.sync)
        for widget in (self.connection, self.pending, self.last_sync, self.conflicts):
            self.addPermanentWidget(widget)
        self.addPermanentWidget(self.sync_button)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        ctx.bus.changed.connect(self._changed)

    def _changed(self, kinds: frozenset[str], _patient_id: str | None) -> None:
        if touches(kinds, "pending") or touches(kinds, "conflicts"):
            self.refresh()

    def refresh(self) -> None:
        Op(self, lambda ws: ws.status(), name="status").success(self.show_status).failure(
            lambda _e: None  # a locked session has no status to show; the lock screen is up
        ).run(self.ctx)

    def show_status(self, status: Any) -> None:
        if status.online is None:
            self.set_online(None)
        else:
            self.set_online(bool(status.online))
        self.pending.setText(
            f"{status.pending} change(s) waiting to sync"
            if status.pending
            else "No changes waiting"
        )
        self.pending.setProperty("pending", bool(status.pending))
        _restyle(self.pending)
        self.last_sync.setText(last_sync_words(status.last_sync))
        self.conflicts.setText(f"Conflicts: {status.conflicts}")
        self.conflicts.setProperty("count", str(status.conflicts))
        self.conflicts.setToolTip("Open the worklist to review conflicts")
        _restyle(self.conflicts)

    def set_online(self, online: bool | None) -> None:
        if online is None:
            self.connection.setText("Server not contacted yet")
        elif online:
            self.connection.setText("● Online")
        else:
            self.connection.setText("● Offline: working from this computer")
        self.connection.setProperty("online", "true" if online else "false")
        _restyle(self.connection)

    def sync(self) -> None:
        if self.syncing:
            return
        self.syncing = True
        self.sync_button.setEnabled(False)
        self.sync_button.setText("Synchronising…")
        Op(self, lambda ws: ws.sync(), name="sync", network=True).success(self._synced).failure(
            self._sync_failed
        ).finally_(self._sync_done).run(self.ctx)

    def _synced(self, _report: object) -> None:
        self.ctx.bus.announce({"all"})
        self.sync_finished.emit(True)

    def _sync_failed(self, error: BaseException) -> None:
        if isinstance(error, NetworkUnavailable):
            self.set_online(False)
            self.showMessage("The server cannot be reached. Your changes are kept here.", 8000)
        else:
            self.ctx.errors.show(self.window(), error)
        self.sync_finished.emit(False)

    def _sync_done(self) -> None:
        self.syncing = False
        self.sync_button.setEnabled(True)
        self.sync_button.setText("Sync now (F5)")
        self.refresh()
