"""The push half of a sync: send the outbox in batches, store every answer.

A batch's answers are stored, and its outbox rows deleted, in ONE local
transaction: a crash before that commit re-sends the batch, and the server
answers a `change_id` it has seen the same way again, so nothing is applied
twice. A refused change (conflict; rejected: forbidden, invalid, a clinical
rule) leaves the outbox only as a stored conflict record holding the reason and
the local version whole, until a person resolves or discards it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from desktop.store import conflicts, outbox, resources
from desktop.store.database import ChartDatabase, Connection
from desktop.store.outbox import OutboxEntry
from desktop.sync.progress import SyncProgress, SyncReport
from desktop.sync.server_api import ServerApi
from shared_models.errors import ClinicError, Forbidden, ValidationFailed

log = logging.getLogger(__name__)

#: A batch's answers by change id.
Results = dict[str, dict[str, Any]]


def push_outbox(
    db: ChartDatabase,
    api: ServerApi,
    client_id: str,
    call: Callable[[Callable[[], bytes]], bytes],
    tracker: SyncProgress,
    report: SyncReport,
    batch_size: int,
) -> None:
    """Push the outbox in batches, each answer stored before its outbox row goes.

    Pipelined: the next batch goes out as soon as the server has answered this
    one (so the server still applies the batches one after the other, in outbox
    order), and this one's answers are stored while the server works on it.
    A conflict the server opens is stored whole from its answer (server, local
    and base versions); one answered without its base (an older server) gets it
    when the sync reconciles the review list (`desktop.sync.conflict_sync.reconcile`).
    """
    tracker.start_push(outbox.count(db.connection()))
    batch = outbox.pending(db.connection(), limit=batch_size)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-push") as sender:
        answer = sender.submit(_send, api, client_id, call, batch) if batch else None
        while answer is not None:
            try:
                results: Results | None = answer.result()
            except (ValidationFailed, Forbidden):
                results = None  # sent again on this thread, which splits or records it
                _push_batch(db, api, client_id, call, batch, report)
            following = _following(db, batch, batch_size)
            answer = sender.submit(_send, api, client_id, call, following) if following else None
            if results is not None:
                _store_answers(db, batch, results, report)
            tracker.pushed(len(batch))
            batch = following


def _following(
    db: ChartDatabase, batch: Sequence[OutboxEntry], batch_size: int
) -> list[OutboxEntry]:
    """The batch after `batch` (whose rows may still be queued: its answers are not stored)."""
    queued = outbox.pending(db.connection(), limit=len(batch) + batch_size)
    return [e for e in queued if e.seq > batch[-1].seq][:batch_size]


def _send(
    api: ServerApi,
    client_id: str,
    call: Callable[[Callable[[], bytes]], bytes],
    batch: Sequence[OutboxEntry],
) -> Results:
    """The server's answers to one batch, by change id (every change answered)."""
    body = encode_push(client_id, batch)
    answer = orjson.loads(call(lambda: api.sync_push(body)))
    results = {str(r["change_id"]): r for r in answer["results"]}
    missing = [e.change_id for e in batch if e.change_id not in results]
    if missing:
        raise ClinicError(f"server answered {len(results)} of {len(batch)} changes")
    return results


def _push_batch(
    db: ChartDatabase,
    api: ServerApi,
    client_id: str,
    call: Callable[[Callable[[], bytes]], bytes],
    batch: Sequence[OutboxEntry],
    report: SyncReport,
) -> None:
    """Send one batch and store its answers.

    A batch the server refuses as a whole (HTTP 422: a change it cannot even
    parse) is split in halves until the bad change is alone; that change is
    then stored as rejected, so one malformed row never blocks the queue.
    """
    try:
        results = _send(api, client_id, call, batch)
    except ValidationFailed as exc:
        if len(batch) == 1:
            _store_answers(db, batch, {batch[0].change_id: _refused(batch[0], exc)}, report)
            return
        half = len(batch) // 2
        _push_batch(db, api, client_id, call, batch[:half], report)
        _push_batch(db, api, client_id, call, batch[half:], report)
        return
    except Forbidden as exc:
        with db.transaction() as conn:
            for entry in batch:
                outbox.record_failure(conn, entry.change_id, "not allowed: " + exc.user_message)
        raise
    _store_answers(db, batch, results, report)


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
    results: Results,
    report: SyncReport,
) -> None:
    """Store every answer of a batch and drop its outbox rows: one transaction.

    The server versions the batch adopts are written together at the end (one
    `executemany` per table rather than a handful of statements per change).
    """
    with db.transaction() as conn:
        for entry in batch:
            outbox.remove(conn, entry.change_id)
        adopted = _Adopted(conn, batch)
        for entry in batch:
            result = results[entry.change_id]
            _store_answer(conn, entry, result, adopted)
            report.pushed += 1
            status = result["status"]
            if status in ("applied", "merged", "conflict", "rejected"):
                counter = "conflicts" if status == "conflict" else status
                setattr(report, counter, getattr(report, counter) + 1)
        adopted.write()


def _store_answer(
    conn: Connection, entry: OutboxEntry, result: dict[str, Any], adopted: _Adopted
) -> None:
    status = result["status"]
    resource = result.get("resource")
    server_json = orjson.dumps(resource) if resource is not None else None
    version = result.get("versionId")
    if status in ("applied", "merged"):
        adopted.adopt(entry, version, resource, server_json)
        return
    reason = _reason(result)
    if status == "conflict":
        conflict_id = str(result.get("conflict_id") or f"conflict:{entry.change_id}")
        base = result.get("base_resource")  # an older server answers without it
        conflicts.record(
            conn, conflict_id=conflict_id, resource_type=entry.resource_type,
            resource_id=entry.id, patient_id=entry.patient_id, status="conflict",
            reason=reason, change_id=entry.change_id, server_version=version,
            server_json=server_json, local_json=entry.json,
            base_json=orjson.dumps(base) if base is not None else None,
        )  # fmt: skip
        adopted.adopt(entry, version, resource, server_json)
        return
    # rejected: the local edit stays on screen (marked unsynced) until a person decides
    conflicts.record(
        conn, conflict_id=f"rejected:{entry.change_id}", resource_type=entry.resource_type,
        resource_id=entry.id, patient_id=entry.patient_id, status="rejected", reason=reason,
        change_id=entry.change_id, local_json=entry.json,
    )  # fmt: skip


class _Adopted:
    """Server versions that become the local copies, written in one batch."""

    def __init__(self, conn: Connection, batch: Sequence[OutboxEntry]) -> None:
        """`batch`'s outbox rows are removed already: what is queued now waits for later."""
        self._conn = conn
        queued = outbox.pending_keys(conn)  # one scan for the batch, not one per answer
        last = {(e.resource_type, e.id): e.change_id for e in batch}
        #: Changes followed by a later edit of their resource (a later batch, or later here).
        self._superseded = {
            e.change_id
            for e in batch
            if (e.resource_type, e.id) in queued or last[(e.resource_type, e.id)] != e.change_id
        }
        self._items: dict[tuple[str, str], tuple[dict[str, Any], bytes, int | None]] = {}

    def adopt(
        self,
        entry: OutboxEntry,
        version: int | None,
        resource: Any,
        server_json: bytes | None,
    ) -> None:
        """The server's current version replaces the local copy, unless a later local
        edit waits (it stays on screen and goes out in a later batch)."""
        if entry.change_id in self._superseded:
            return
        key = (entry.resource_type, entry.id)
        if server_json is None:
            resources.remove(self._conn, *key)
        else:
            self._items[key] = (resource, server_json, version)

    def write(self) -> None:
        resources.put_many(self._conn, list(self._items.values()), dirty=False)


def _reason(result: dict[str, Any]) -> str:
    """The server's issues in plain words, each with the element it names."""
    texts = []
    for item in result.get("issues") or []:
        what = str(item.get("diagnostics") or item.get("code") or "")
        where = ", ".join(str(e) for e in item.get("expression") or [])
        texts.append(f"{where}: {what}" if where and what else what or where)
    reason = "; ".join(dict.fromkeys(t for t in texts if t))
    return reason or f"The server answered {result['status']}."
