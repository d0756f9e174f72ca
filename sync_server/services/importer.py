"""Load FHIR data files: Bundles (transaction, batch, collection, searchset) and NDJSON.

Transaction and batch Bundles run exactly as if posted to the API (through the
FHIR repository). Collection and searchset Bundles, and NDJSON (Bulk Data
export) lines, are written with their own ids (PUT semantics) in batches of
`batch_size` by `bulk_load`: each line validated on its own (a bad line is
refused alone), the rest stored set-based and committed together; the rows
stored are those the repository would store. With `workers` > 1 the batches
are validated and written by that many processes at once. Conditional
references (`Location?identifier=...`, as Synthea's Bulk Data export writes
them) are pointed at their single match, with the files of referenced types
loaded first. Reports carry counts and line numbers, never content.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared_models.errors import ClinicError
from shared_models.fhir_schema import fast_validator
from shared_models.fhir_validation import SUPPORTED_TYPES
from sync_server.db.engine import make_engine, make_sessionmaker
from sync_server.services.bulk_load import BulkItem, load, prepare
from sync_server.services.bundles import process_bundle, resolve_conditional_references
from sync_server.services.context import AccessGuard, AuditSink, RequestContext
from sync_server.services.fhir_repository import FhirRepository, ResourceWrite, new_id

Progress = Callable[[int], None]
#: (file name, line or entry number, error type and element, never content)
ImportError_ = tuple[str, int, str]
#: (line or entry number, the resource: NDJSON lines stay bytes until a worker parses them)
Batch = list[tuple[int, Any]]


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
        """Write one batch: invalid lines refused, the rest bulk-loaded in one commit.

        When the bulk load cannot take the batch (a resource twice in it, a
        concurrent writer, a constraint), the batch goes through the repository
        line by line instead. Returns counts and errors.
        """
        errors: list[ImportError_] = []
        with sessions() as session:
            good: list[tuple[int, ResourceWrite]] = []
            items: list[BulkItem] = []
            lookups = FhirRepository(session, self.ctx, self.guard, self.audit)
            for number, raw in batch:
                write = _to_write(raw)
                if isinstance(write, str):
                    errors.append((name, number, write))
                    continue
                if write.resource is not None:
                    resolve_conditional_references(lookups, write.resource, _resolved_references)
                try:
                    items.append(prepare(write))
                    good.append((number, write))
                except ClinicError as exc:
                    errors.append((name, number, _describe(exc)))
                    self.audit.record(
                        session, self.ctx, action="write", outcome="failure",
                        resource_type=write.resource_type, resource_id=write.id,
                        detail={"error": type(exc).__name__},
                    )  # fmt: skip
            try:
                load(session, self.ctx, self.guard, self.audit, items)
                session.commit()
                return Counter(i.type for i in items), errors
            except (ClinicError, psycopg.Error):
                session.rollback()
            counts: Counter[str] = Counter()
            repo = FhirRepository(session, self.ctx, self.guard, self.audit)
            for number, write in good:
                try:
                    repo.write_many([write])
                    session.commit()
                    counts[write.resource_type] += 1
                except ClinicError as exc:
                    session.rollback()
                    errors.append((name, number, _describe(exc)))
            return counts, errors


def _to_write(raw: Any) -> ResourceWrite | str:
    """The write a line or entry asks for (PUT with its own id), or why there is none."""
    if isinstance(raw, bytes):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return "not well-formed JSON"
    if not isinstance(raw, dict) or not isinstance(raw.get("resourceType"), str):
        return "no resourceType"
    return ResourceWrite(raw["resourceType"], str(raw.get("id") or new_id()), raw)


#: `Type?identifier=...` -> `Type/id`, found by earlier lines (per process: a worker has its own).
_resolved_references: dict[str, str] = {}

#: Files of these types are loaded first, in this order: other files' conditional
#: references name them (an Encounter its Location, Practitioner and Organization).
_REFERENCED_FIRST = ("Organization", "Location", "Practitioner", "PractitionerRole", "Patient")


#: Forked workers start with every module this process has imported: a spawned one
#: spends about 2 s of CPU importing them again. A forked worker never touches the
#: connections it inherits (it opens its own, and leaves with os._exit, which closes
#: nothing). Spawn where fork is not the platform's safe choice.
_START_METHOD = "fork" if sys.platform == "linux" else "spawn"
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
            if _START_METHOD == "fork":
                _warm_validators(paths)
            url = self.engine.url.render_as_string(hide_password=False)
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context(_START_METHOD),
                initializer=_start_worker,
                initargs=(url,),
            )
        try:
            for path in sorted(paths, key=_load_rank):
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

    @staticmethod
    def _ndjson_lines(path: Path) -> Iterator[tuple[int, bytes]]:
        """Raw lines: parsed where they are validated (cheaper to send to a worker)."""
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield number, line

    def _write_batches(self, path: Path, numbered: Iterator[tuple[int, Any]]) -> None:
        batch: Batch = []
        for number, resource in numbered:
            batch.append((number, resource))
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


def _first_type(path: Path) -> str | None:
    """The resource type on an NDJSON file's first line (a Bulk Data file holds one type)."""
    first = next((raw for _, raw in Importer._ndjson_lines(path)), None)
    write = _to_write(first) if first is not None else None
    return write.resource_type if isinstance(write, ResourceWrite) else None


def _load_rank(path: Path) -> int:
    """NDJSON files of referenced types first; everything else keeps its order (stable sort)."""
    if path.suffix != ".ndjson":
        return len(_REFERENCED_FIRST)
    kind = _first_type(path)
    return _REFERENCED_FIRST.index(kind) if kind in _REFERENCED_FIRST else len(_REFERENCED_FIRST)


def _warm_validators(paths: list[Path]) -> None:
    """Compile the schema checks of the types the NDJSON files hold (their first
    lines say) before workers are forked: built once here, not once per worker."""
    for path in paths:
        if path.suffix != ".ndjson":
            continue
        kind = _first_type(path)
        if kind in SUPPORTED_TYPES:
            fast_validator(kind)


def _describe(exc: ClinicError) -> str:
    issues = getattr(exc, "issues", None) or []
    where = "; ".join(f"{expr}: {msg}" for expr, msg in issues[:3])
    return f"{type(exc).__name__}: {where or exc}"
