"""What the GUI shows about sync: a progress bar while it runs, and a status badge.

`SyncProgress` is written by the engine's thread and polled by the GUI (a
timer reads `latest()`, as Anki's sync does), so it only hands out frozen
snapshots under a lock. `read_status` builds the badge from the store alone
(no network call): online/offline as of the last attempt, last successful
sync, pending changes and open conflicts.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from desktop.store import conflicts, outbox, sync_state
from desktop.store.database import Connection

#: sync_state keys the engine writes after every attempt.
LAST_ATTEMPT = "last_attempt"
LAST_ATTEMPT_OK = "last_attempt_ok"


@dataclass(frozen=True)
class ProgressSnapshot:
    phase: str  # "idle" | "push" | "pull" | "done" | "failed"
    #: Local changes sent so far, and how many there were at the start.
    pushed: int
    to_push: int
    #: Resources received, and bytes of pull pages received.
    pulled: int
    bytes_received: int
    started: float
    elapsed: float
    #: About how many resources this pull brings (the server's estimate), once known.
    to_pull: int | None = None
    #: Seconds after `started` at which the pull began.
    pull_began: float = 0.0

    @property
    def seconds_left(self) -> float | None:
        """Estimated seconds left of the push or of the pull; None while unknown."""
        if self.phase == "push" and self.pushed and self.to_push:
            done, total, spent = self.pushed, self.to_push, self.elapsed
        elif self.phase == "pull" and self.pulled and self.to_pull:
            done, total, spent = self.pulled, self.to_pull, self.elapsed - self.pull_began
        else:
            return None
        rate = done / max(spent, 1e-6)
        return max(total - done, 0) / rate

    @property
    def fraction(self) -> float | None:
        """0..1 for a determinate bar, None for a busy indicator (a pull of unknown size)."""
        if self.phase == "push" and self.to_push:
            return min(self.pushed / self.to_push, 1.0)
        if self.phase == "pull" and self.to_pull:
            return min(self.pulled / self.to_pull, 1.0)
        if self.phase == "done":
            return 1.0
        return None


class SyncProgress:
    """Thread-safe progress of one sync; the engine updates it, the GUI polls it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = ProgressSnapshot("idle", 0, 0, 0, 0, time.monotonic(), 0.0)

    def latest(self) -> ProgressSnapshot:
        with self._lock:
            snap = self._snapshot
        if snap.phase in ("done", "failed", "idle"):
            return snap
        return replace(snap, elapsed=time.monotonic() - snap.started)

    def start_push(self, to_push: int) -> None:
        with self._lock:
            self._snapshot = ProgressSnapshot("push", 0, to_push, 0, 0, time.monotonic(), 0.0)

    def pushed(self, count: int) -> None:
        with self._lock:
            snap = self._snapshot
            self._snapshot = replace(snap, pushed=snap.pushed + count)

    def start_pull(self) -> None:
        with self._lock:
            snap = self._snapshot
            began = time.monotonic() - snap.started
            self._snapshot = replace(snap, phase="pull", pull_began=began)

    def expect_pull(self, total: int) -> None:
        """The server's estimate of the resources this pull brings (its first page says)."""
        with self._lock:
            self._snapshot = replace(self._snapshot, to_pull=max(total, self._snapshot.pulled))

    def pulled(self, resources: int, size: int) -> None:
        with self._lock:
            snap = self._snapshot
            self._snapshot = replace(
                snap, pulled=snap.pulled + resources, bytes_received=snap.bytes_received + size
            )

    def finish(self, ok: bool) -> None:
        with self._lock:
            snap = self._snapshot
            self._snapshot = replace(
                snap, phase="done" if ok else "failed", elapsed=time.monotonic() - snap.started
            )


@dataclass
class SyncReport:
    """What one sync did (no PHI: counts only)."""

    pushed: int = 0
    applied: int = 0
    merged: int = 0
    conflicts: int = 0
    rejected: int = 0
    pulled: int = 0
    removed: int = 0
    kept_local: int = 0
    pages: int = 0
    bytes_received: int = 0
    seconds: float = 0.0
    #: Of `seconds`, time spent waiting for the server (a pull overlaps it with local work).
    server_seconds: float = 0.0
    #: Of `seconds`, time the pull's writer waited for the next page to be downloaded
    #: and prepared (the rest it spent storing pages).
    page_wait_seconds: float = 0.0
    held_for_review: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"pushed {self.pushed} (applied {self.applied}, merged {self.merged}, "
            f"conflicts {self.conflicts}, rejected {self.rejected}); "
            f"pulled {self.pulled} in {self.pages} pages ({self.bytes_received:,} bytes), "
            f"removed {self.removed}, kept local {self.kept_local}, "
            f"held for review {len(self.held_for_review)}; {self.seconds:.2f} s"
            f" ({self.server_seconds:.2f} s waiting for the server)"
        )


@dataclass(frozen=True)
class SyncStatus:
    #: Whether the last attempt reached the server; None if never tried.
    online: bool | None
    last_attempt: datetime | None
    last_sync: datetime | None
    pending: int
    open_conflicts: int

    @property
    def online_words(self) -> str:
        return {True: "online", False: "offline", None: "unknown"}[self.online]


def record_attempt(conn: Connection, ok: bool, when: datetime | None = None) -> None:
    """Note whether the server was reached (and, if so, the sync completed)."""
    moment = when or datetime.now(UTC)
    sync_state.put(conn, LAST_ATTEMPT, moment.isoformat())
    sync_state.put(conn, LAST_ATTEMPT_OK, "1" if ok else "0")
    if ok:
        sync_state.set_last_sync(conn, moment)


def read_status(conn: Connection) -> SyncStatus:
    attempt = sync_state.get(conn, LAST_ATTEMPT)
    ok = sync_state.get(conn, LAST_ATTEMPT_OK)
    return SyncStatus(
        online=None if ok is None else ok == "1",
        last_attempt=datetime.fromisoformat(attempt) if attempt else None,
        last_sync=sync_state.last_sync(conn),
        pending=outbox.count(conn),
        open_conflicts=conflicts.count_open(conn),
    )
