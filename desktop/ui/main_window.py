"""The main window: home (search, today's schedule, worklist) and one tab per open chart.

Pages: sign-in, work (home + charts), lock screen, in one stack, so a lock hides
every chart at once. Keyboard: Ctrl+F find a patient, Ctrl+W close the chart,
Ctrl+Tab next tab, F5 sync, Ctrl+L lock, Ctrl+Q quit.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QGridLayout,
    QLabel,
    QMainWindow,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.ui.break_glass import BreakGlassDialog
from desktop.ui.chart.chart_tab import ChartTab
from desktop.ui.context import UiContext
from desktop.ui.initial_download import InitialDownloadDialog
from desktop.ui.lock_screen import LockScreen
from desktop.ui.ops import Op
from desktop.ui.patient_search import PatientSearch
from desktop.ui.schedule.page import SchedulePage
from desktop.ui.schedule_today import TodaySchedule
from desktop.ui.signin import SignInScreen
from desktop.ui.status_bar import SyncStatusBar
from desktop.ui.worklist import Worklist

IDLE_CHECK_MS = 20_000
#: Activity is reported to the facade at most this often (it is a store call).
TOUCH_EVERY_S = 15.0


def _titled(title: str, widget: QWidget) -> QWidget:
    box = QWidget()
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    label = QLabel(title)
    label.setProperty("role", "heading")
    layout.addWidget(label)
    layout.addWidget(widget, 1)
    return box


class HomePage(QWidget):
    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search = PatientSearch(ctx)
        self.schedule = TodaySchedule(ctx)
        self.worklist = Worklist(ctx)
        grid = QGridLayout(self)
        grid.addWidget(_titled("Find a patient (Ctrl+F)", self.search), 0, 0, 2, 1)
        grid.addWidget(_titled("Today's schedule", self.schedule), 0, 1)
        grid.addWidget(
            _titled("My worklist: drafts, conflicts, refused changes", self.worklist), 1, 1
        )
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)


class MainWindow(QMainWindow):
    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Clinic workstation")
        self.signin = SignInScreen(ctx)
        self.lock_screen = LockScreen(ctx)
        self.tabs = QTabWidget()
        self.tabs.setObjectName("chartTabs")
        self.tabs.setDocumentMode(True)
        self.tabs.setTabsClosable(True)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.home = HomePage(ctx)
        self.tabs.addTab(self.home, "Home")
        self.tabs.tabBar().setTabButton(0, self.tabs.tabBar().ButtonPosition.RightSide, None)
        self.pages = QStackedWidget()
        for page in (self.signin, self.tabs, self.lock_screen):
            self.pages.addWidget(page)
        self.setCentralWidget(self.pages)
        self.status = SyncStatusBar(ctx)
        self.setStatusBar(self.status)
        self.status.hide()
        self.signin.signed_in.connect(self._signed_in)
        self.lock_screen.unlocked.connect(self._unlocked)
        self.lock_screen.sign_out.connect(self.sign_out)
        self.home.search.open_patient.connect(self.open_chart)
        self.home.schedule.open_patient.connect(self.open_chart)
        self.home.worklist.open_patient.connect(self.open_chart)
        self.status.show_conflicts.connect(self.show_worklist)
        self._build_menus()
        self.idle_timer = QTimer(self)
        self.idle_timer.setInterval(IDLE_CHECK_MS)
        self.idle_timer.timeout.connect(self._check_idle)
        self._last_touch = 0.0
        self._watching_input = False
        self.pages.setCurrentWidget(self.signin)
        self.resize(1280, 820)

    # -- menus and shortcuts ---------------------------------------------------

    def _action(self, menu: Any, text: str, keys: Any, slot: Any) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(keys))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        self.session_actions.append(action)
        return action

    def _build_menus(self) -> None:
        self.session_actions: list[QAction] = []
        bar = self.menuBar()
        session = bar.addMenu("&Session")
        self._action(session, "&Lock", "Ctrl+L", self.lock)
        self._action(session, "Sign &out", "Ctrl+Shift+Q", self.sign_out)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence("Ctrl+Q"))
        quit_action.triggered.connect(self.close)
        session.addAction(quit_action)
        patient = bar.addMenu("&Patient")
        self._action(patient, "&Find patient", "Ctrl+F", self.focus_search)
        self._action(patient, "&Close chart", "Ctrl+W", self.close_current)
        self._action(patient, "&Next tab", "Ctrl+Tab", self.next_tab)
        self._action(patient, "&Home", "Ctrl+Home", lambda: self.tabs.setCurrentIndex(0))
        self._action(patient, "Open outside my locations (&break the glass)…", "Ctrl+Shift+B",
                     self.break_glass)  # fmt: skip
        self._action(patient, "&Schedule: day and week…", "Ctrl+Shift+S", self.show_schedule)
        sync = bar.addMenu("S&ync")
        self._action(sync, "&Sync now", "F5", self.status.sync)
        self._action(sync, "&Worklist and conflicts", "Ctrl+Shift+W", self.show_worklist)
        self.update_check: Any = None
        bar.addMenu("&Help").addAction("Check for &updates…", self.check_for_updates)
        self._enable_session_actions(False)

    def _enable_session_actions(self, enabled: bool) -> None:
        for action in self.session_actions:
            action.setEnabled(enabled)

    # -- session ---------------------------------------------------------------

    def _signed_in(self, result: Any) -> None:
        self.setWindowTitle(f"Clinic workstation: {result.user.username}")
        self.pages.setCurrentWidget(self.tabs)
        self.status.show()
        self.status.set_online(bool(result.online))
        self._enable_session_actions(True)
        self.idle_timer.start()
        self.home.schedule.refresh()
        self.home.worklist.refresh()
        self.status.refresh()
        self.focus_search()
        if result.online:
            Op(self, lambda ws: ws.status(), name="status").success(self._sync_after_sign_in).run(
                self.ctx
            )

    def _sync_after_sign_in(self, status: Any) -> None:
        """First sign-in on this computer: the initial download; later: a quiet sync."""
        if status.last_sync is None:
            self.download = InitialDownloadDialog(self.ctx, self)
            self.download.open()
            self.download.start()
        else:
            self.status.sync()

    def lock(self, reason: str = "You locked the session.") -> None:
        if self.pages.currentWidget() is not self.tabs:
            return
        Op(self, lambda ws: ws.lock(), name="lock").success(lambda _r: self._show_lock(reason)).run(
            self.ctx
        )

    def _show_lock(self, reason: str) -> None:
        self.idle_timer.stop()
        self._enable_session_actions(False)
        self.status.hide()
        self.lock_screen.show_locked(getattr(self.ctx.user, "username", "this user"), reason)
        self.pages.setCurrentWidget(self.lock_screen)

    def _unlocked(self) -> None:
        self.pages.setCurrentWidget(self.tabs)
        self.status.show()
        self._enable_session_actions(True)
        self.idle_timer.start()

    def _check_idle(self) -> None:
        Op(self, lambda ws: ws.lock_if_idle(), name="idle-check").success(
            lambda locked: (
                self._show_lock("Locked after a period without activity.") if locked else None
            )
        ).failure(lambda _e: None).run(self.ctx)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Keyboard and mouse use keep the idle lock away (reported at most every 15 s)."""
        if event.type() in (QEvent.Type.KeyPress, QEvent.Type.MouseButtonPress) and (
            self.pages.currentWidget() is self.tabs
        ):
            now = time.monotonic()
            if now - self._last_touch >= TOUCH_EVERY_S:
                self._last_touch = now
                Op(None, lambda ws: ws.touch(), name="touch").failure(lambda _e: None).run(self.ctx)
        return False

    def sign_out(self) -> None:
        for index in range(self.tabs.count() - 1, 0, -1):
            self.close_tab(index)
        self.ctx.user = None
        self.idle_timer.stop()
        self._enable_session_actions(False)
        self.status.hide()
        self.setWindowTitle("Clinic workstation")
        Op(self, lambda ws: ws.lock(), name="sign-out").run(self.ctx)
        self.pages.setCurrentWidget(self.signin)
        self.signin.username.setFocus()

    # -- charts ------------------------------------------------------------------

    def chart_tabs(self) -> list[ChartTab]:
        return [
            w for i in range(self.tabs.count()) if isinstance(w := self.tabs.widget(i), ChartTab)
        ]

    def open_chart(self, patient_id: str) -> ChartTab:
        for tab in self.chart_tabs():
            if tab.patient_id == patient_id:
                self.tabs.setCurrentWidget(tab)
                return tab
        tab = ChartTab(self.ctx, patient_id)
        index = self.tabs.addTab(tab, tab.title)
        tab.loaded.connect(lambda t=tab: self._retitle(t))
        self.tabs.setCurrentIndex(index)
        return tab

    def _retitle(self, tab: ChartTab) -> None:
        index = self.tabs.indexOf(tab)
        if index >= 0:
            self.tabs.setTabText(index, tab.title)
            self.tabs.setTabToolTip(index, f"{tab.title}: Ctrl+W closes this chart")

    def close_tab(self, index: int) -> None:
        widget = self.tabs.widget(index)
        if isinstance(widget, ChartTab):
            widget.close_chart()
            self.tabs.removeTab(index)
            widget.deleteLater()

    def close_current(self) -> None:
        self.close_tab(self.tabs.currentIndex())

    def show_schedule(self) -> SchedulePage:
        """The schedule (day and week views, booking, check-in) in a window of its own."""
        page: SchedulePage | None = getattr(self, "schedule_page", None)
        if page is None:
            page = self.schedule_page = SchedulePage(self.ctx, self)
            page.setWindowFlag(Qt.WindowType.Window)
            page.setWindowTitle("Schedule")
            page.open_patient.connect(self.open_chart)
            page.resize(1100, 700)
        page.show()
        page.raise_()
        page.load_scopes()
        return page

    def check_for_updates(self) -> None:
        # Imported when asked: the update client (TUF) costs ~0.8 s of start-up otherwise.
        from desktop.ui.update_check import UpdateCheck

        if self.update_check is None:
            self.update_check = UpdateCheck(self, self.ctx)
        self.update_check.run()

    def next_tab(self) -> None:
        self.tabs.setCurrentIndex((self.tabs.currentIndex() + 1) % self.tabs.count())

    def focus_search(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.home.search.focus_search()

    def break_glass(self) -> None:
        self.break_glass_dialog = BreakGlassDialog(self.ctx, self)
        self.break_glass_dialog.opened.connect(self.open_chart)
        self.break_glass_dialog.open()

    def show_worklist(self) -> None:
        self.tabs.setCurrentIndex(0)
        self.home.worklist.refresh()
        self.home.worklist.view.setFocus()

    def closeEvent(self, event: QCloseEvent) -> None:
        for tab in self.chart_tabs():
            tab.close_chart()
        super().closeEvent(event)

    def showEvent(self, event: QShowEvent) -> None:
        # Input reaches the window's QWindow before any widget: watching it there sees
        # every key and click without a Python call for every event of every widget.
        super().showEvent(event)
        handle = self.windowHandle()
        if handle is not None and not self._watching_input:
            handle.installEventFilter(self)
            self._watching_input = True
