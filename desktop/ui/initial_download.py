"""Initial download: a progress dialog over the first sync, with a pause that resumes later.

Progress is polled every 150 ms from the engine's thread-safe tracker (as
Anki's sync does); "Pause" stops after the page being stored, and the next
sync (F5 or the next start) continues from there.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QDialog, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from desktop.services.initial_download import (
    DownloadPaused,
    PausableProgress,
    describe,
    describe_left,
)
from desktop.ui.context import UiContext
from desktop.ui.ops import Op
from shared_models.errors import NetworkUnavailable

POLL_MS = 150


class InitialDownloadDialog(QDialog):
    #: True when the download completed, False when paused or failed.
    finished_download = Signal(bool)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setObjectName("initialDownload")
        self.setWindowTitle("Downloading the charts for this computer")
        self.progress = PausableProgress()
        intro = QLabel(
            "This computer is downloading the charts of the patients cared for at your "
            "locations, so you can work without a network. You can use the charts already "
            "downloaded in the meantime."
        )
        intro.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)
        self.status = QLabel("Connecting…")
        self.status.setObjectName("downloadStatus")
        self.pause_button = QPushButton("Pause (continues later)")
        self.pause_button.setObjectName("pauseDownload")
        self.pause_button.clicked.connect(self.pause)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.bar)
        layout.addWidget(self.status)
        layout.addWidget(self.pause_button)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.resize(520, 200)

    def start(self) -> None:
        self.timer.start()
        progress = self.progress
        Op(
            self, lambda ws: ws.sync(progress=progress), name="initial-download", network=True
        ).success(self._done).failure(self._failed).run(self.ctx)

    def poll(self) -> None:
        snap = self.progress.latest()
        if snap.phase == "push" and snap.fraction is not None:
            self.bar.setRange(0, 100)
            self.bar.setValue(int(snap.fraction * 100))
            self.status.setText(f"Sending {snap.pushed} of {snap.to_push} local changes…")
        elif snap.phase == "pull" and snap.fraction is not None and snap.to_pull:
            self.bar.setRange(0, 100)
            self.bar.setValue(int(snap.fraction * 100))
            self.status.setText(
                "Received " + describe_left(snap.pulled, snap.to_pull, snap.seconds_left)
            )
        elif snap.phase == "pull":
            self.bar.setRange(0, 0)
            self.status.setText(
                "Received " + describe(snap.pulled, snap.bytes_received, snap.elapsed)
            )

    def pause(self) -> None:
        self.progress.pause()
        self.pause_button.setEnabled(False)
        self.status.setText("Pausing after the current page…")

    def _done(self, _report: object) -> None:
        self.timer.stop()
        snap = self.progress.latest()
        self.ctx.bus.announce({"all"})
        self.status.setText("Done: " + describe(snap.pulled, snap.bytes_received, snap.elapsed))
        self.finished_download.emit(True)
        self.accept()

    def _failed(self, error: BaseException) -> None:
        self.timer.stop()
        self.ctx.bus.announce({"all"})
        self.finished_download.emit(False)
        if isinstance(error, DownloadPaused | NetworkUnavailable):
            self.reject()  # the status bar shows offline; the next sync resumes
            return
        self.ctx.errors.show(self.parentWidget(), error)
        self.reject()
