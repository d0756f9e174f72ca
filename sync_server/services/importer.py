"""Load FHIR data files: Bundles (transaction, batch, collection, searchset) and NDJSON.

Every resource goes through the FHIR repository (validated once there, versioned,
indexed). Transaction and batch Bundles run exactly as if posted to the API.
Collection and searchset Bundles, and NDJSON (Bulk Data export) lines, are
written with their own ids (PUT semantics) in batches of `batch_size`, each
committed on its own; a batch with a bad line is retried line by line so only
that line is refused. With `workers` > 1 the batches are validated and written
by that many processes at once (validation is the dominant cost: about
0.3-0.8 ms per resource). Reports carry counts and line numbers, never content.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared_models.errors import ClinicError
from sync_server.db.engine import make_engine, make_sessionmaker
from sync_server.services.bundles import process_bundle
from sync_server.services.context import AccessGuard, AuditSink, RequestContext
from sync_server.services.fhir_repository import FhirRepository, ResourceWrite, new_id

Progress = Callable[[int], None]
#: (file name, line or entry number, error type and element, never content)
ImportError_ = tuple[str, int, str]
Batch = list[tuple[int, ResourceWrite]]


@dataclass
class ImportSummary:
    files: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    errors: list[ImportError_] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def resources(self) -> int:
        return sum(self.by_type.values())

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class _Writer:
    """What a process needs to write batches: picklable, so worker processes get a copy."""

    ctx: RequestContext
    guard: AccessGuard
    audit: AuditSink

    def write(
        self, sessions: sessionmaker[Session], name: str, batch: Batch
    ) -> tuple[Counter[str], list[ImportError_]]:
        """Write one batch (one commit); on a refusal, line by line. Returns counts, errors."""
        with sessions() as session:
            try:
                FhirRepository(session, self.ctx, self.guard, self.audit).write_many(
                    [w for _, w in batch]
                )
                session.commit()
                return Counter(w.resource_type for _, w in batch), []
            except ClinicError:
                session.rollback()
            counts: Counter[str] = Counter()
            errors: list[ImportError_] = []
            repo = FhirRepository(session, self.ctx, self.guard, self.audit)
            for number, write in batch:
                try:
                    repo.write_many([write])
                    session.commit()
                    counts[write.resource_type] += 1
                except ClinicError as exc:
                    session.rollback()
                    errors.append((name, number, _describe(exc)))
            return counts, errors


_worker_sessions: sessionmaker[Session] | None = None


def _start_worker(database_url: str) -> None:
    global _worker_sessions
    _worker_sessions = make_sessionmaker(make_engine(database_url, pool_size=1))


def _write_in_worker(
    writer: _Writer, name: str, batch: Batch
) -> tuple[Counter[str], list[ImportError_]]:
    assert _worker_sessions is not None
    return writer.write(_worker_sessions, name, batch)


@dataclass
class Importer:
    engine: Engine
    ctx: RequestContext
    guard: AccessGuard
    audit: AuditSink
    batch_size: int = 1000
    workers: int = 1
    progress: Progress = lambda done: None
    summary: ImportSummary = field(default_factory=ImportSummary)

    def import_files(self, paths: list[Path]) -> ImportSummary:
        started = time.perf_counter()
        self._sessions = make_sessionmaker(self.engine)
        self._writer = _Writer(self.ctx, self.guard, self.audit)
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[Future[tuple[Counter[str], list[ImportError_]]]] = []
        if self.workers > 1:
            url = self.engine.url.render_as_string(hide_password=False)
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(url,),
            )
        try:
            for path in paths:
                self.summary.files += 1
                if path.suffix == ".ndjson":
                    self._write_batches(path, self._ndjson_lines(path))
                else:
                    self._json(path)
                self._drain()
        finally:
            if self._pool is not None:
                self._pool.shutdown()
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _json(self, path: Path) -> None:
        try:
            document = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            self.summary.errors.append((path.name, 0, "not well-formed JSON"))
            return
        if not isinstance(document, dict):
            self.summary.errors.append((path.name, 0, "not a FHIR resource"))
            return
        if document.get("resourceType") == "Bundle" and document.get("type") in (
            "transaction",
            "batch",
        ):
            self._bundle(path, document)
        elif document.get("resourceType") == "Bundle":
            resources = [e.get("resource") for e in document.get("entry") or []]
            self._write_batches(path, enumerate(resources, start=1))
        else:
            self._write_batches(path, iter([(1, document)]))

    def _bundle(self, path: Path, bundle: dict[str, Any]) -> None:
        with self._sessions() as session:
            repo = FhirRepository(session, self.ctx, self.guard, self.audit)
            try:
                response = process_bundle(repo, bundle)
            except ClinicError as exc:
                session.rollback()
                self.summary.errors.append((path.name, 0, _describe(exc)))
                return
            session.commit()
        entries = bundle.get("entry") or []
        for number, (entry, result) in enumerate(zip(entries, response["entry"], strict=True), 1):
            status = str(result.get("response", {}).get("status", ""))
            if status.startswith("2"):
                self.summary.by_type[(entry.get("resource") or {}).get("resourceType", "?")] += 1
            else:
                self.summary.errors.append((path.name, number, f"HTTP {status}"))
        self.progress(self.summary.resources)

    def _ndjson_lines(self, path: Path) -> Iterator[tuple[int, Any]]:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield number, orjson.loads(line)
                except orjson.JSONDecodeError:
                    self.summary.errors.append((path.name, number, "not well-formed JSON"))

    def _write_batches(self, path: Path, numbered: Iterator[tuple[int, Any]]) -> None:
        batch: Batch = []
        for number, resource in numbered:
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                self.summary.errors.append((path.name, number, "no resourceType"))
                continue
            resource_id = str(resource.get("id") or new_id())
            batch.append((number, ResourceWrite(resource["resourceType"], resource_id, resource)))
            if len(batch) >= self.batch_size:
                self._submit(path.name, batch)
                batch = []
        if batch:
            self._submit(path.name, batch)

    def _submit(self, name: str, batch: Batch) -> None:
        if self._pool is None:
            self._collect(self._writer.write(self._sessions, name, batch))
            return
        self._pending.append(self._pool.submit(_write_in_worker, self._writer, name, batch))
        while len(self._pending) > 2 * self.workers:  # bounded read-ahead
            self._collect(self._pending.pop(0).result())

    def _drain(self) -> None:
        """Finish a file's batches before the next file (files may depend on earlier ones)."""
        while self._pending:
            self._collect(self._pending.pop(0).result())

    def _collect(self, outcome: tuple[Counter[str], list[ImportError_]]) -> None:
        counts, errors = outcome
        self.summary.by_type.update(counts)
        self.summary.errors.extend(errors)
        self.progress(self.summary.resources)


def _describe(exc: ClinicError) -> str:
    issues = getattr(exc, "issues", None) or []
    where = "; ".join(f"{expr}: {msg}" for expr, msg in issues[:3])
    return f"{type(exc).__name__}: {where or exc}"
