"""The desktop sync engine: push the outbox, store the answers, pull from the cursor.

The protocol is DESIGN.md's "Sync protocol (contract)". What makes a crash at
any point lose and duplicate nothing:

- Push: the outbox goes out in batches (at most 500 changes). A batch's
  answers are stored, and its outbox rows deleted, in ONE local transaction.
  A crash before that commit re-sends the batch; the server answers a
  `change_id` it has seen the same way again (idempotency), so nothing is
  applied twice.
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
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import orjson

from desktop.store import conflicts, outbox, resources, sync_state
from desktop.store.database import ChartDatabase, Connection
from desktop.store.outbox import OutboxEntry
from desktop.store.remote_changes import RemoteChange, apply_remote_page
from desktop.sync.progress import SyncProgress, record_attempt
from desktop.sync.retry import RetryPolicy, call_with_retries
from desktop.sync.server_api import ServerApi, TokenPair
from shared_models.errors import (
    ClinicError,
    Forbidden,
    NetworkUnavailable,
    ValidationFailed,
)
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
            _push(db, api, workstation_id, call, tracker, report, min(batch_size, MAX_PUSH_CHANGES))
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


# -- push ---------------------------------------------------------------------------------


def _push(
    db: ChartDatabase,
    api: ServerApi,
    client_id: str,
    call: Callable[[Callable[[], bytes]], bytes],
    tracker: SyncProgress,
    report: SyncReport,
    batch_size: int,
) -> None:
    tracker.start_push(outbox.count(db.connection()))
    conflict_ids: list[str] = []
    while True:
        batch = outbox.pending(db.connection(), limit=batch_size)
        if not batch:
            break
        conflict_ids += _push_batch(db, api, client_id, call, batch, report)
        tracker.pushed(len(batch))
    if conflict_ids:
        _fetch_conflict_bases(db, api, call, set(conflict_ids))


def _push_batch(
    db: ChartDatabase,
    api: ServerApi,
    client_id: str,
    call: Callable[[Callable[[], bytes]], bytes],
    batch: Sequence[OutboxEntry],
    report: SyncReport,
) -> list[str]:
    """Send one batch and store its answers; returns the conflict ids the server opened.

    A batch the server refuses as a whole (HTTP 422: a change it cannot even
    parse) is split in halves until the bad change is alone; that change is
    then stored as rejected, so one malformed row never blocks the queue.
    """
    body = encode_push(client_id, batch)
    try:
        answer = orjson.loads(call(lambda: api.sync_push(body)))
    except ValidationFailed as exc:
        if len(batch) == 1:
            return _store_answers(db, batch, {batch[0].change_id: _refused(batch[0], exc)}, report)
        half = len(batch) // 2
        return _push_batch(db, api, client_id, call, batch[:half], report) + _push_batch(
            db, api, client_id, call, batch[half:], report
        )
    except Forbidden as exc:
        with db.transaction() as conn:
            for entry in batch:
                outbox.record_failure(conn, entry.change_id, "not allowed: " + exc.user_message)
        raise
    results = {str(r["change_id"]): r for r in answer["results"]}
    missing = [e.change_id for e in batch if e.change_id not in results]
    if missing:
        raise ClinicError(f"server answered {len(results)} of {len(batch)} changes")
    return _store_answers(db, batch, results, report)


def encode_push(client_id: str, batch: Sequence[OutboxEntry]) -> bytes:
    """The push request, with each resource's JSON spliced in as stored (not re-encoded)."""
    parts = []
    for entry in batch:
        head = orjson.dumps(
            {
                "change_id": entry.change_id,
                "resourceType": entry.resource_type,
                "id": entry.id,
                "op": entry.op,
                "base_version": entry.base_version,
            }
        )
        if entry.json is None or entry.op == "delete":
            parts.append(head)
        else:
            parts.append(head[:-1] + b',"resource":' + entry.json + b"}")
    return b'{"client_id":' + orjson.dumps(client_id) + b',"changes":[' + b",".join(parts) + b"]}"


def _refused(entry: OutboxEntry, exc: ValidationFailed) -> dict[str, Any]:
    reasons = [f"{where}: {what}" if where else what for where, what in exc.issues]
    return {
        "change_id": entry.change_id,
        "status": "rejected",
        "issues": [{"diagnostics": r} for r in reasons or [exc.user_message]],
    }


def _store_answers(
    db: ChartDatabase,
    batch: Sequence[OutboxEntry],
    results: dict[str, dict[str, Any]],
    report: SyncReport,
) -> list[str]:
    """Store every answer of a batch and drop its outbox rows: one transaction."""
    opened: list[str] = []
    with db.transaction() as conn:
        for entry in batch:
            result = results[entry.change_id]
            outbox.remove(conn, entry.change_id)
            opened += _store_answer(conn, entry, result)
            report.pushed += 1
            status = result["status"]
            if status in ("applied", "merged", "conflict", "rejected"):
                counter = "conflicts" if status == "conflict" else status
                setattr(report, counter, getattr(report, counter) + 1)
    return opened


def _store_answer(conn: Connection, entry: OutboxEntry, result: dict[str, Any]) -> list[str]:
    status = result["status"]
    resource = result.get("resource")
    server_json = orjson.dumps(resource) if resource is not None else None
    version = result.get("versionId")
    if status in ("applied", "merged"):
        _adopt_server_version(conn, entry, version, server_json)
        return []
    reason = _reason(result)
    if status == "conflict":
        conflict_id = str(result.get("conflict_id") or f"conflict:{entry.change_id}")
        conflicts.record(
            conn, conflict_id=conflict_id, resource_type=entry.resource_type,
            resource_id=entry.id, patient_id=entry.patient_id, status="conflict",
            reason=reason, change_id=entry.change_id, server_version=version,
            server_json=server_json, local_json=entry.json,
        )  # fmt: skip
        _adopt_server_version(conn, entry, version, server_json)
        return [conflict_id] if result.get("conflict_id") else []
    # rejected: the local edit stays on screen (marked unsynced) until a person decides
    conflicts.record(
        conn, conflict_id=f"rejected:{entry.change_id}", resource_type=entry.resource_type,
        resource_id=entry.id, patient_id=entry.patient_id, status="rejected", reason=reason,
        change_id=entry.change_id, local_json=entry.json,
    )  # fmt: skip
    return []


def _adopt_server_version(
    conn: Connection, entry: OutboxEntry, version: int | None, server_json: bytes | None
) -> None:
    """The server's current version becomes the local copy, unless a later local edit waits."""
    if outbox.has_pending(conn, entry.resource_type, entry.id):
        return
    if server_json is None:
        resources.remove(conn, entry.resource_type, entry.id)
    else:
        resources.put(conn, orjson.loads(server_json), server_json, version_id=version, dirty=False)


def _reason(result: dict[str, Any]) -> str:
    """The server's issues in plain words, each with the element it names."""
    texts = []
    for item in result.get("issues") or []:
        what = str(item.get("diagnostics") or item.get("code") or "")
        where = ", ".join(str(e) for e in item.get("expression") or [])
        texts.append(f"{where}: {what}" if where and what else what or where)
    reason = "; ".join(dict.fromkeys(t for t in texts if t))
    return reason or f"The server answered {result['status']}."


def _fetch_conflict_bases(
    db: ChartDatabase,
    api: ServerApi,
    call: Callable[[Callable[[], Any]], Any],
    wanted: set[str],
) -> None:
    """Add the base version (what this workstation edited) to conflicts just opened.

    The review screen compares base, mine and theirs; only the server keeps the
    base. Best effort: a conflict without its base is still complete enough to decide.
    """
    try:
        listing = call(lambda: api.sync_conflicts("open", 1000))
    except ClinicError as exc:
        log.warning("could not fetch conflict details: %s", exc.detail)
        return
    bases = {
        str(c["id"]): orjson.dumps(c["base_resource"])
        for c in listing.get("conflicts", [])
        if str(c.get("id")) in wanted and c.get("base_resource") is not None
    }
    if bases:
        with db.transaction() as conn:
            for conflict_id, base_json in bases.items():
                conflicts.set_base(conn, conflict_id, base_json)


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
