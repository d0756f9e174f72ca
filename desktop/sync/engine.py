"""The desktop sync engine: push the outbox, store the answers, pull from the cursor.

The protocol is DESIGN.md's "Sync protocol (contract)". What makes a crash at
any point lose and duplicate nothing:

- Push (`desktop.sync.push`): the outbox goes out in batches (at most 500
  changes). A batch's answers are stored, and its outbox rows deleted, in ONE
  local transaction. A crash before that commit re-sends the batch; the server
  answers a `change_id` it has seen the same way again (idempotency), so
  nothing is applied twice.
- Pull: each page is applied in one local transaction together with the new
  cursor (`desktop.store.remote_changes`), so a crash resumes at the last
  stored page: an interrupted initial download continues, it does not restart.
- A change the server refuses (conflict, rejected: forbidden, invalid, a
  clinical rule) leaves the outbox only as a stored conflict record with the
  reason and the local version whole; it stays there until a person resolves
  or discards it. Nothing is dropped after a retry limit.
- One sync runs at a time per profile: a lock per database file in this
  process, and the profile lock (`ProfileLock`) between processes.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

from desktop.store import outbox, resources, sync_state
from desktop.store.database import ChartDatabase
from desktop.store.remote_changes import apply_remote_page
from desktop.sync.access_log_upload import send_access_log
from desktop.sync.conflict_sync import reconcile, send_decisions
from desktop.sync.page_feed import PageFeed, PulledPage
from desktop.sync.progress import SyncProgress, SyncReport, record_attempt
from desktop.sync.push import push_outbox
from desktop.sync.retry import RetryPolicy, call_with_retries
from desktop.sync.server_api import ServerApi, TokenPair
from shared_models.errors import ClinicError, NetworkUnavailable, ValidationFailed
from shared_models.sync_messages import INITIAL_CURSOR, MAX_PULL_LIMIT, MAX_PUSH_CHANGES

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Resources asked for per pull page: the most the server sends (fewer commits and calls).
DEFAULT_PAGE_LIMIT = MAX_PULL_LIMIT
#: WAL size (4 KB pages) that triggers a checkpoint: SQLite's default, and during a pull.
_DEFAULT_CHECKPOINT_PAGES = 1000
_PULL_CHECKPOINT_PAGES = 16384

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class SyncInProgress(ClinicError):
    user_message = "A synchronisation is already running on this workstation."
    help_topic = "sync"


def run_sync(
    db: ChartDatabase,
    api: ServerApi,
    *,
    workstation_id: str,
    progress: SyncProgress | None = None,
    retry: RetryPolicy | None = None,
    reload_tokens: Callable[[], TokenPair | None] | None = None,
    batch_size: int = MAX_PUSH_CHANGES,
    page_limit: int = DEFAULT_PAGE_LIMIT,
    username: str | None = None,
) -> SyncReport:
    """One sync: push every queued change, then pull until the server has no more.

    First it sends the conflict decisions people made (`desktop.sync.conflict_sync`);
    after the pull it makes the local review list match the server's and sends
    `username`'s offline chart reads (`desktop.sync.access_log_upload`).

    Raises `SyncInProgress` if this profile is already syncing, and
    `NetworkUnavailable` when the server stays unreachable after the retries
    (everything stored before that point stays stored).
    """
    lock = _lock_for(db)
    if not lock.acquire(blocking=False):
        raise SyncInProgress("sync already running for this profile")
    started = time.monotonic()
    tracker = progress or SyncProgress()
    policy = retry or RetryPolicy()

    report = SyncReport()

    def call(fn: Callable[[], T]) -> T:
        begun = time.monotonic()
        try:
            return call_with_retries(fn, policy, api=api, reload_tokens=reload_tokens)
        finally:
            report.server_seconds += time.monotonic() - begun

    try:
        try:
            send_decisions(db, api, call)
            push_outbox(
                db, api, workstation_id, call, tracker, report, min(batch_size, MAX_PUSH_CHANGES)
            )
            tracker.start_pull()
            queue_digest = _pull(db, api, call, tracker, report, page_limit)
            reconcile(db, api, call, server_digest=queue_digest)
            if username:  # offline chart reads of the signed-in user, to the audit trail
                send_access_log(db, api, call, workstation_id=workstation_id, username=username)
        except NetworkUnavailable:
            with db.transaction() as conn:
                record_attempt(conn, ok=False)
            tracker.finish(ok=False)
            raise
        except BaseException:
            tracker.finish(ok=False)
            raise
        with db.transaction() as conn:
            record_attempt(conn, ok=True)
        tracker.finish(ok=True)
        report.seconds = time.monotonic() - started
        log.info("sync done: %s", report.summary())
        return report
    finally:
        lock.release()


def _lock_for(db: ChartDatabase) -> threading.Lock:
    key = str(db.path.resolve())
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


# -- pull ---------------------------------------------------------------------------------


def _pull(
    db: ChartDatabase,
    api: ServerApi,
    call: Callable[[Callable[[], bytes]], bytes],
    tracker: SyncProgress,
    report: SyncReport,
    limit: int,
) -> str | None:
    """Pull pages until the server has no more, each stored with its cursor in one transaction.

    Returns the last page's fingerprint of the server's open conflicts (if sent).

    `PageFeed` workers download and prepare the next pages while this thread
    stores the current one (they are the only users of `api` meanwhile). A
    stored cursor the server refuses (stale, another user's) restarts the feed
    from 0.
    """
    stored_cursor = sync_state.cursor(db.connection())
    # Until a first sync has completed (the initial download, perhaps resumed), the
    # first page asks how much follows, for the download's time left.
    ask = [sync_state.last_sync(db.connection()) is None]

    def fetch(cursor: str) -> bytes:
        estimate, ask[0] = ask[0], False
        return call(partial(api.sync_pull, cursor, limit, estimate=estimate))

    with _gc_paused(), _checkpoints_deferred(db):
        while True:
            with PageFeed(fetch, stored_cursor) as feed:
                try:
                    page = _next_page(feed, report)
                except ValidationFailed:
                    if stored_cursor == INITIAL_CURSOR:
                        raise
                    log.warning("the server refused the stored pull cursor; downloading again")
                    restart_feed(db)
                    stored_cursor = INITIAL_CURSOR
                    continue
                while True:
                    result = apply_remote_page(db, page.prepared, page.cursor)
                    report.pages += 1
                    report.pulled += page.received
                    report.removed += result.removed
                    report.kept_local += result.kept_local
                    report.bytes_received += page.size
                    held = report.held_for_review
                    held += [p for p in result.held_for_review if p not in held]
                    if page.remaining is not None:
                        tracker.expect_pull(report.pulled + page.remaining)
                    tracker.pulled(page.received, page.size)
                    if not page.has_more:
                        return page.open_conflicts
                    page = _next_page(feed, report)


def _next_page(feed: PageFeed, report: SyncReport) -> PulledPage:
    begun = time.monotonic()
    try:
        return feed.next()
    finally:
        report.page_wait_seconds += time.monotonic() - begun


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while pages are decoded and stored.

    A page is thousands of fresh dicts that all survive until it is stored; each
    allocation burst triggers collections that walk every one of them (measured:
    decoding 20,000 resources took 8.1 s with the collector on, 1.4 s with it
    off). Reference counting still frees everything; the collector resumes after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@contextmanager
def _checkpoints_deferred(db: ChartDatabase) -> Iterator[None]:
    """Copy the WAL into the database file every ~64 MB during a pull, not every 4 MB.

    By default every page's commit also checkpoints (a page is larger than the
    1,000-page threshold): the file is written and synced twice per page. Each
    commit still syncs the WAL (durability is unchanged) and the WAL holds
    encrypted pages only; the last checkpoint runs when the pull ends.
    """
    conn = db.connection()
    conn.execute(f"PRAGMA wal_autocheckpoint = {_PULL_CHECKPOINT_PAGES}")
    try:
        yield
    finally:
        if db.is_open:  # a session locked mid-sync has closed its connections already
            conn.execute(f"PRAGMA wal_autocheckpoint = {_DEFAULT_CHECKPOINT_PAGES}")
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def restart_feed(db: ChartDatabase) -> None:
    """Forget every synced copy and the cursor (one transaction); unsynced edits stay.

    Used when the server no longer accepts the stored cursor (another user's,
    expired, or forged): the next pull from cursor 0 brings the current state
    of this user's scope, so nothing stale from the old feed survives.
    """
    with db.transaction() as conn:
        rows = conn.execute("SELECT resource_type, id FROM resources WHERE dirty = 0").fetchall()
        for resource_type, resource_id in rows:
            if not outbox.has_pending(conn, resource_type, resource_id):
                resources.remove(conn, resource_type, resource_id)
        sync_state.put(conn, sync_state.CURSOR, INITIAL_CURSOR)
