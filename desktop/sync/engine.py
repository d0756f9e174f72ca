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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

import orjson

from desktop.store import outbox, resources, sync_state
from desktop.store.database import ChartDatabase
from desktop.store.remote_changes import RemoteChange, apply_remote_page
from desktop.sync.progress import SyncProgress, SyncReport, record_attempt
from desktop.sync.push import push_outbox
from desktop.sync.retry import RetryPolicy, call_with_retries
from desktop.sync.server_api import ServerApi, TokenPair
from shared_models.errors import ClinicError, NetworkUnavailable, ValidationFailed
from shared_models.sync_messages import INITIAL_CURSOR, MAX_PUSH_CHANGES

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Resources asked for per pull page.
DEFAULT_PAGE_LIMIT = 2000

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
) -> SyncReport:
    """One sync: push every queued change, then pull until the server has no more.

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
            push_outbox(
                db, api, workstation_id, call, tracker, report, min(batch_size, MAX_PUSH_CHANGES)
            )
            tracker.start_pull()
            _pull(db, api, call, tracker, report, page_limit)
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
) -> None:
    """Pull pages until the server has no more; the next page downloads while one is stored.

    The prefetch thread is the only user of `api` while it runs (the loop waits
    for it before asking again). A page fetched but not stored when the process
    dies is simply fetched again: the cursor only moves with a stored page.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-pull") as fetcher:
        stored_cursor = sync_state.cursor(db.connection())
        pending = fetcher.submit(call, partial(api.sync_pull, stored_cursor, limit))
        first = True
        while True:
            try:
                raw = pending.result()
            except ValidationFailed:
                if not first or stored_cursor == INITIAL_CURSOR:
                    raise
                log.warning("the server refused the stored pull cursor; downloading again")
                restart_feed(db)
                stored_cursor = INITIAL_CURSOR
                pending = fetcher.submit(call, partial(api.sync_pull, INITIAL_CURSOR, limit))
                continue
            first = False
            with _gc_paused():
                page = orjson.loads(raw)
                cursor, has_more = str(page["cursor"]), bool(page["has_more"])
                if has_more:
                    pending = fetcher.submit(call, partial(api.sync_pull, cursor, limit))
                received = len(page["changes"])
                changes = _latest_per_resource(RemoteChange.from_wire(c) for c in page["changes"])
                del page
                result = apply_remote_page(db, changes, cursor)
            report.pages += 1
            report.pulled += received
            report.removed += result.removed
            report.kept_local += result.kept_local
            report.bytes_received += len(raw)
            held = report.held_for_review
            held += [p for p in result.held_for_review if p not in held]
            tracker.pulled(received, len(raw))
            if not has_more:
                return


def _latest_per_resource(changes: Iterable[RemoteChange]) -> list[RemoteChange]:
    """One change per resource: the last. A page of the feed can carry several versions
    of one resource; it is stored atomically, so only the newest matters (and the
    store's batched index writes expect each resource once)."""
    latest: dict[tuple[str, str, bool], RemoteChange] = {}
    for change in changes:
        key = (change.resource_type, change.id, change.out_of_scope)
        latest.pop(key, None)  # re-insert: keep the feed's order of last occurrences
        latest[key] = change
    return list(latest.values())


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic GC while a page is decoded and stored.

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
