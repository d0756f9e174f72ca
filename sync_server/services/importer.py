"""Load FHIR data files: Bundles (transaction, batch, collection, searchset) and NDJSON.

Every resource goes through the FHIR repository (validated once there, versioned,
indexed). Transaction and batch Bundles run exactly as if posted to the API.
Collection and searchset Bundles, and NDJSON (Bulk Data export) lines, are
written with their own ids (PUT semantics), NDJSON in batches of
`batch_size` committed one by one; a batch with a bad line is retried line by
line so only that line is refused. Reports carry counts and line numbers,
never content.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.orm import Session, sessionmaker

from shared_models.errors import ClinicError
from sync_server.services.bundles import process_bundle
from sync_server.services.context import AccessGuard, AuditSink, RequestContext
from sync_server.services.fhir_repository import FhirRepository, ResourceWrite, new_id

Progress = Callable[[int], None]


@dataclass
class ImportSummary:
    files: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    #: (file name, line or entry number, error type and message without content)
    errors: list[tuple[str, int, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def resources(self) -> int:
        return sum(self.by_type.values())

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


@dataclass
class Importer:
    sessions: sessionmaker[Session]
    ctx: RequestContext
    guard: AccessGuard
    audit: AuditSink
    batch_size: int = 1000
    progress: Progress = lambda done: None  # noqa: E731
    summary: ImportSummary = field(default_factory=ImportSummary)

    def import_files(self, paths: list[Path]) -> ImportSummary:
        started = time.perf_counter()
        for path in paths:
            self.summary.files += 1
            if path.suffix == ".ndjson":
                self._ndjson(path)
            else:
                self._json(path)
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _repo(self, session: Session) -> FhirRepository:
        return FhirRepository(session, self.ctx, self.guard, self.audit)

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
        with self.sessions() as session:
            try:
                response = process_bundle(self._repo(session), bundle)
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

    def _ndjson(self, path: Path) -> None:
        def lines() -> Iterator[tuple[int, Any]]:
            with path.open("rb") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield number, orjson.loads(line)
                    except orjson.JSONDecodeError:
                        self.summary.errors.append((path.name, number, "not well-formed JSON"))

        self._write_batches(path, lines())

    def _write_batches(self, path: Path, numbered: Iterator[tuple[int, Any]]) -> None:
        batch: list[tuple[int, ResourceWrite]] = []
        for number, resource in numbered:
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                self.summary.errors.append((path.name, number, "no resourceType"))
                continue
            write = ResourceWrite(resource["resourceType"], str(resource.get("id") or new_id()), resource)
            batch.append((number, write))
            if len(batch) >= self.batch_size:
                self._flush(path, batch)
                batch = []
        if batch:
            self._flush(path, batch)

    def _flush(self, path: Path, batch: list[tuple[int, ResourceWrite]]) -> None:
        with self.sessions() as session:
            try:
                self._repo(session).write_many([w for _, w in batch])
                session.commit()
                self.summary.by_type.update(w.resource_type for _, w in batch)
            except ClinicError:
                session.rollback()
                self._one_by_one(path, batch, session)
        self.progress(self.summary.resources)

    def _one_by_one(self, path: Path, batch: list[tuple[int, ResourceWrite]], session: Session) -> None:
        repo = self._repo(session)
        for number, write in batch:
            try:
                repo.write_many([write])
                session.commit()
                self.summary.by_type[write.resource_type] += 1
            except ClinicError as exc:
                session.rollback()
                self.summary.errors.append((path.name, number, _describe(exc)))


def _describe(exc: ClinicError) -> str:
    issues = getattr(exc, "issues", None) or []
    where = "; ".join(f"{expr}: {msg}" for expr, msg in issues[:3])
    return f"{type(exc).__name__}: {where or exc}"
