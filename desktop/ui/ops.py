"""Op objects: the only way a widget reaches the Workstation facade.

A widget never calls the facade from a slot (it could block on SQLCipher or the
network). It builds an op and runs it:

    Op(self, lambda ws: ws.load_chart(pid)).success(self.show_chart).run(ctx)

Store work runs on ONE serial worker thread (a SQLite connection belongs to one
thread, and serial writes keep the outbox order), network-bound work (sign-in,
sync) on a small pool. Results come back as closures queued under a lock and
drained by a queued signal on the GUI thread, so `success`/`failure` callbacks
always run there (the shape of Anki's TaskManager). A write op names what it
changed (`announces=True`: the facade's `Changes`); after success the
`ChangeBus` tells every view, and each view decides whether to refresh.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from desktop.ui.context import UiContext

log = logging.getLogger(__name__)

T = TypeVar("T")

#: An op slower than this is logged (by name only, never its arguments: they hold PHI).
SLOW_OP_SECONDS = 1.0


class ChangeBus(QObject):
    """Fires after every successful write (Anki's `operation_did_execute`).

    Payload: the areas touched ("vitals", "allergies", "notes", "pending",
    "conflicts", ..., or "all" after a sync) and the patient id (None: any).
    """

    changed = Signal(object, object)  # frozenset[str], str | None

    def announce(self, kinds: Iterable[str], patient_id: str | None = None) -> None:
        self.changed.emit(frozenset(kinds), patient_id)

    def announce_changes(self, result: object) -> None:
        """Announce a facade `Changes` (or a list of them) returned by a write."""
        items = result if isinstance(result, list | tuple) else [result]
        by_patient: dict[str | None, set[str]] = {}
        for item in items:
            kinds = getattr(item, "kinds", None)
            if kinds is not None:
                by_patient.setdefault(getattr(item, "patient_id", None), {"pending"}).update(kinds)
        for patient_id, kinds in by_patient.items():
            self.announce(kinds, patient_id)


def touches(kinds: frozenset[str], wanted: str) -> bool:
    return wanted in kinds or "all" in kinds


class TaskRunner(QObject):
    """One serial executor for store work, a pool for network work."""

    _ready = Signal()
    #: Number of ops in flight changed (for a busy indicator).
    busy_changed = Signal(int)

    def __init__(self, workstation: Any, parent: QObject | None = None, network_workers: int = 3):
        super().__init__(parent)
        self.workstation = workstation
        self._store = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ehr-store")
        self._network = ThreadPoolExecutor(
            max_workers=network_workers, thread_name_prefix="ehr-network"
        )
        self._lock = threading.Lock()
        self._queued: list[Callable[[], None]] = []
        self._in_flight = 0
        self._closed = False
        #: Set once the facade is there (at once, or after `open_workstation`).
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        if workstation is not None:
            self._opened.set()
        self._ready.connect(self._drain, Qt.ConnectionType.QueuedConnection)

    def open_workstation(
        self, opener: Callable[[], Any], on_done: Callable[[Future[Any]], None]
    ) -> Future[Any]:
        """Open the facade on the store thread, after the window is already showing.

        Importing and opening the facade (FHIR models, HTTP client, keychain) is
        the slow part of start-up; every op waits for it, so none sees a missing
        facade. If opening fails, every op fails with that error.
        """

        def open_it() -> Any:
            try:
                self.workstation = opener()
                return self.workstation
            except BaseException as error:
                self._open_error = error
                raise
            finally:
                self._opened.set()

        self._in_flight += 1
        future = self._store.submit(open_it)
        future.add_done_callback(lambda f: self._post(lambda: self._finish(f, on_done)))
        return future

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def submit(
        self,
        name: str,
        fn: Callable[[Any], T],
        on_done: Callable[[Future[T]], None],
        *,
        network: bool = False,
    ) -> Future[T]:
        """Run `fn(workstation)` off the GUI thread; `on_done(future)` runs on the GUI thread."""
        if self._closed:  # a timer firing while the window closes: nothing to do
            cancelled: Future[T] = Future()
            cancelled.cancel()
            return cancelled
        executor = self._network if network else self._store
        self._in_flight += 1
        self.busy_changed.emit(self._in_flight)
        future = executor.submit(self._timed, name, fn)
        future.add_done_callback(lambda f: self._post(lambda: self._finish(f, on_done)))
        return future

    def _timed(self, name: str, fn: Callable[[Any], T]) -> T:
        self._opened.wait()
        if self._open_error is not None:
            raise self._open_error
        started = time.perf_counter()
        try:
            return fn(self.workstation)
        finally:
            elapsed = time.perf_counter() - started
            if elapsed > SLOW_OP_SECONDS:
                log.warning("slow op %s took %.2f s", name, elapsed)

    def _finish(self, future: Future[T], on_done: Callable[[Future[T]], None]) -> None:
        self._in_flight -= 1
        self.busy_changed.emit(self._in_flight)
        on_done(future)

    def _post(self, callback: Callable[[], None]) -> None:
        with self._lock:
            self._queued.append(callback)
        if shiboken6.isValid(self):
            self._ready.emit()

    def _drain(self) -> None:
        with self._lock:
            callbacks, self._queued = self._queued, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                # A callback bug must not stop the other callbacks from running.
                log.exception("op callback failed")

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting ops. Queued store work still runs (an autosave queued as the
        window closes is a write the clinician expects kept); queued network work is
        dropped (the next start syncs again)."""
        self._closed = True
        if not self._opened.is_set():  # never opened: release ops waiting for the facade
            self._open_error = RuntimeError("the profile was never opened")
            self._opened.set()
        self._network.shutdown(wait=wait, cancel_futures=True)
        self._store.shutdown(wait=wait, cancel_futures=False)
        self._drain()


class Op(Generic[T]):
    """One piece of facade work, started by a widget, answered on the GUI thread.

    If the parent widget was closed before the answer came, the callbacks are
    skipped (the chart tab is gone; nothing to show it in). Without a `failure`
    callback, the error goes to the one error presenter.
    """

    def __init__(
        self,
        parent: QWidget | None,
        fn: Callable[[Any], T],
        *,
        name: str = "",
        network: bool = False,
        announces: bool = False,
    ) -> None:
        self._parent = parent
        self._fn = fn
        self._name = name or getattr(fn, "__name__", "op")
        self._network = network
        self._announces = announces
        self._on_success: Callable[[T], None] | None = None
        self._on_failure: Callable[[BaseException], None] | None = None
        self._on_finally: Callable[[], None] | None = None

    def success(self, callback: Callable[[T], None]) -> Op[T]:
        self._on_success = callback
        return self

    def failure(self, callback: Callable[[BaseException], None]) -> Op[T]:
        self._on_failure = callback
        return self

    def finally_(self, callback: Callable[[], None]) -> Op[T]:
        """Runs after success or failure (re-enable a button, hide a spinner)."""
        self._on_finally = callback
        return self

    def run(self, ctx: UiContext) -> Future[T]:
        def done(future: Future[T]) -> None:
            if future.cancelled():
                return
            if self._parent is not None and not shiboken6.isValid(self._parent):
                return
            try:
                error = future.exception()
                if error is None:
                    result = future.result()
                    if self._announces:
                        ctx.bus.announce_changes(result)
                    if self._on_success:
                        self._on_success(result)
                elif self._on_failure:
                    self._on_failure(error)
                else:
                    ctx.errors.show(self._parent, error)
            finally:
                if self._on_finally:
                    self._on_finally()

        return ctx.runner.submit(self._name, self._fn, done, network=self._network)
