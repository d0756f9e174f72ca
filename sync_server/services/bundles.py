"""Bundles in and out: `transaction` and `batch` processing, and the response Bundles.

A transaction is all-or-nothing (one SAVEPOINT around every entry); a batch
runs each entry on its own. Both resolve `urn:uuid:` (and other fullUrl)
references between entries, so real Synthea bundles load unchanged: POST
entries get new server ids and every reference to their fullUrl is rewritten.
In a transaction a reference that resolves to nothing (an unknown `urn:`, a
`Type/id` that exists neither in the bundle nor in the store, a conditional
reference without exactly one match) rejects the whole Bundle. Entries are
processed in FHIR order (DELETE, POST, PUT, GET); the response keeps the
request's entry order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from shared_models.errors import ClinicError, ValidationFailed
from shared_models.outcomes import from_error
from sync_server.services.fhir_repository import (
    FhirRepository,
    PreconditionFailed,
    ResourceGone,
    ResourceWrite,
    StoredResource,
    WriteResult,
    fhir_instant,
    new_id,
)
from sync_server.services.search import SearchResult
from sync_server.services.search_params import parse_reference

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


@dataclass
class _Entry:
    index: int
    method: str
    url: str
    resource: dict[str, Any] | None
    full_url: str | None
    if_match: int | None = None
    if_none_exist: str | None = None
    resource_type: str = ""
    id: str | None = None
    #: Set when `ifNoneExist` matched: the entry writes nothing.
    existing: StoredResource | None = None
    response: dict[str, Any] = field(default_factory=dict)


def _invalid(message: str, expression: str) -> ValidationFailed:
    return ValidationFailed(message, issues=[(expression, message)])


def process_bundle(
    repo: FhirRepository, bundle: Any, *, representation: bool = False
) -> dict[str, Any]:
    """Run a transaction or batch Bundle; returns the response Bundle (as a dict)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _invalid("Expected a Bundle", "resourceType")
    kind = bundle.get("type")
    if kind not in ("transaction", "batch"):
        raise _invalid("Only transaction and batch Bundles can be posted here", "Bundle.type")
    entries = [_parse_entry(i, e) for i, e in enumerate(bundle.get("entry") or [])]
    if kind == "transaction":
        repo.run_unit("transaction", "Bundle", lambda: _run_transaction(repo, entries))
    else:
        _run_batch(repo, entries)
    return {
        "resourceType": "Bundle",
        "id": new_id(),
        "type": f"{kind}-response",
        "entry": [_response_entry(e, representation) for e in entries],
    }


def _parse_entry(index: int, raw: Any) -> _Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise _invalid("Each entry needs a request", f"{where}.request")
    request = raw["request"]
    method = str(request.get("method", "")).upper()
    url = str(request.get("url", "")).lstrip("/")
    if method not in _ORDER:
        raise _invalid(f"Unsupported method {method or '(none)'}", f"{where}.request.method")
    if not url:
        raise _invalid("request.url is required", f"{where}.request.url")
    resource = raw.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise _invalid("POST and PUT entries need a resource", f"{where}.resource")
    entry = _Entry(index, method, url, resource, raw.get("fullUrl"))
    if request.get("ifMatch"):
        entry.if_match = _etag_version(str(request["ifMatch"]), f"{where}.request.ifMatch")
    entry.if_none_exist = request.get("ifNoneExist") or None
    path = url.split("?", 1)[0].split("/")
    entry.resource_type = path[0]
    if method == "POST":
        entry.id = new_id()
    elif len(path) >= 2:
        entry.id = path[1]
    elif method in ("PUT", "DELETE") and "?" not in url:
        raise _invalid("PUT and DELETE need Type/id", f"{where}.request.url")
    return entry


def _etag_version(value: str, expression: str) -> int:
    digits = value.removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise _invalid('If-Match must be an ETag such as W/"3"', expression)
    return int(digits)


def _resolve_conditional_targets(repo: FhirRepository, entries: list[_Entry]) -> None:
    for entry in entries:
        if entry.method == "POST" and entry.if_none_exist:
            matched = repo.conditional_match(entry.resource_type, entry.if_none_exist)
            if matched is not None:
                entry.existing, entry.id = matched, matched.id
        elif entry.method in ("PUT", "DELETE") and entry.id is None:
            _, _, query = entry.url.partition("?")
            matched = repo.conditional_match(entry.resource_type, query)
            if matched is None and entry.method == "DELETE":
                raise _invalid("Conditional delete matched nothing", f"Bundle.entry[{entry.index}]")
            entry.id = matched.id if matched else new_id()


def _reference_map(entries: list[_Entry]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for entry in entries:
        if entry.full_url and entry.id and entry.method in ("POST", "PUT"):
            mapping[entry.full_url] = f"{entry.resource_type}/{entry.id}"
    return mapping


def _references(node: Any, path: str) -> Iterator[tuple[dict[str, Any], str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield node, path
            elif isinstance(value, dict | list):
                yield from _references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _references(item, f"{path}[{i}]")


def _rewrite_references(
    repo: FhirRepository, entries: list[_Entry], *, strict: bool
) -> dict[int, ClinicError]:
    """Point references at the entries' new ids; returns the entries that cannot resolve."""
    mapping = _reference_map(entries)
    in_bundle = {(e.resource_type, e.id) for e in entries if e.method in ("POST", "PUT")}
    errors: dict[int, ClinicError] = {}
    literal: dict[tuple[str, str], list[tuple[int, str]]] = {}
    conditional: dict[str, str | None] = {}
    for entry in entries:
        if entry.resource is None or entry.method not in ("POST", "PUT"):
            continue
        entry.resource = orjson.loads(orjson.dumps(entry.resource))  # private copy
        where = f"Bundle.entry[{entry.index}].resource"
        for holder, path in _references(entry.resource, where):
            value: str = holder["reference"]
            if value in mapping:
                holder["reference"] = mapping[value]
            elif value.startswith("urn:"):
                errors.setdefault(entry.index, _invalid("Reference to nothing in the Bundle", path))
            elif "?" in value and not value.startswith("#") and strict:
                if value not in conditional:
                    conditional[value] = _resolve_conditional_reference(repo, value)
                if conditional[value] is None:
                    errors.setdefault(
                        entry.index, _invalid("Conditional reference unresolved", path)
                    )
                else:
                    holder["reference"] = conditional[value]
            elif strict:
                parsed = parse_reference(value)
                if parsed and parsed[0] and "://" not in value and parsed not in in_bundle:
                    key = (parsed[0], parsed[1])
                    literal.setdefault(key, []).append((entry.index, path))
    if literal:
        found = repo.existing_keys(list(literal))
        for key, places in literal.items():
            if key not in found:
                for index, path in places:
                    errors.setdefault(index, _invalid(f"Reference to a missing {key[0]}", path))
    return errors


def resolve_conditional_references(
    repo: FhirRepository, resource: dict[str, Any], known: dict[str, str]
) -> None:
    """Point a resource's `Type?identifier=...` references at their single match, in place.

    For resources stored as they come (NDJSON, collection Bundles): Synthea's
    Bulk Data export names practitioners, locations and organisations by
    identifier, and only a resolved `Encounter.location` links the patient to
    the care site. A reference that matches nothing (or several) stays as
    written. `known` caches the matches already found.
    """
    for holder, _path in _references(resource, ""):
        value: str = holder["reference"]
        target_type, question, _query = value.partition("?")
        if not question or value.startswith(("#", "urn:")) or "/" in target_type:
            continue  # not `Type?query` (an absolute URL or a literal reference)
        target = known.get(value)
        if target is None:
            target = _resolve_conditional_reference(repo, value)
            if target is None:
                continue
            known[value] = target
        holder["reference"] = target


def _resolve_conditional_reference(repo: FhirRepository, value: str) -> str | None:
    """`Type?identifier=s|v` -> `Type/id` of its single match (None for none or several)."""
    target_type, _, query = value.partition("?")
    try:
        matched = repo.conditional_match(target_type, query)
    except ClinicError:
        return None
    return f"{target_type}/{matched.id}" if matched else None


def _run_transaction(repo: FhirRepository, entries: list[_Entry]) -> None:
    _resolve_conditional_targets(repo, entries)
    errors = _rewrite_references(repo, entries, strict=True)
    if errors:
        raise next(iter(errors.values()))
    for entry in sorted(entries, key=lambda e: _ORDER[e.method]):
        if entry.method == "DELETE":
            _delete(repo, entry)
    writes = [e for e in entries if e.method in ("POST", "PUT") and e.existing is None]
    try:
        results = repo.write_many(
            [ResourceWrite(e.resource_type, e.id or "", e.resource, e.if_match) for e in writes]
        )
    except ValidationFailed as exc:
        raise _locate(exc, writes) from None
    for entry, result in zip(writes, results, strict=True):
        _set_write_response(entry, result)
    for entry in entries:
        if entry.existing is not None:
            _set_write_response(entry, WriteResult(entry.existing, created=False))
        elif entry.method == "GET":
            entry.response = _get(repo, entry)


def _locate(exc: ValidationFailed, writes: list[_Entry]) -> ValidationFailed:
    """Name the failing entry: `Patient.birthDate` -> `Bundle.entry[3].resource.birthDate`."""
    position = getattr(exc, "batch_index", None)
    if position is None:
        return exc
    entry = writes[position]
    prefix = f"Bundle.entry[{entry.index}].resource"
    issues = [
        (
            prefix + expr[len(entry.resource_type) :]
            if expr.startswith(entry.resource_type)
            else prefix,
            msg,
        )
        for expr, msg in exc.issues
    ]
    return ValidationFailed(str(exc), issues=issues)


def _run_batch(repo: FhirRepository, entries: list[_Entry]) -> None:
    errors: dict[int, ClinicError] = {}
    for entry in entries:
        try:
            if (entry.method == "POST" and entry.if_none_exist) or entry.id is None:
                _resolve_conditional_targets(repo, [entry])
        except ClinicError as exc:
            errors[entry.index] = exc
    errors.update(_rewrite_references(repo, entries, strict=False))
    for entry in sorted(entries, key=lambda e: _ORDER[e.method]):
        try:
            if entry.index in errors:
                raise errors[entry.index]
            if entry.method == "DELETE":
                _delete(repo, entry)
            elif entry.method == "GET":
                entry.response = _get(repo, entry)
            elif entry.existing is not None:
                _set_write_response(entry, WriteResult(entry.existing, created=False))
            else:
                result = repo.write_version(
                    entry.resource_type, entry.id or "", entry.resource,
                    expected_version=entry.if_match,
                )  # fmt: skip
                _set_write_response(entry, result)
        except ClinicError as exc:
            status, outcome = _status_of(exc)
            entry.response = {"response": {"status": str(status), "outcome": outcome}}


def _status_of(exc: ClinicError) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, ResourceGone):
        return 410, from_error(exc)[1]
    if isinstance(exc, PreconditionFailed):
        return 412, from_error(exc)[1]
    return from_error(exc)


def _delete(repo: FhirRepository, entry: _Entry) -> None:
    result = repo.delete(entry.resource_type, entry.id or "", expected_version=entry.if_match)
    entry.response = {
        "response": {"status": "204 No Content", "etag": result.stored.etag},
    }


def _get(repo: FhirRepository, entry: _Entry) -> dict[str, Any]:
    path, _, query = entry.url.partition("?")
    parts = path.split("/")
    if len(parts) == 1:
        result = repo.search(parts[0], parse_qsl(query, keep_blank_values=True))
        body = searchset(result, base="", self_url=entry.url, next_url=None)
        return {"resource": orjson.Fragment(body), "response": {"status": "200 OK"}}
    if len(parts) == 4 and parts[2] == "_history":
        stored = repo.vread(parts[0], parts[1], int(parts[3]) if parts[3].isdigit() else -1)
    else:
        stored = repo.read(parts[0], parts[1])
    return {
        "resource": orjson.Fragment(stored.json or b"{}"),
        "response": {"status": "200 OK", "etag": stored.etag},
    }


def _set_write_response(entry: _Entry, result: WriteResult) -> None:
    stored = result.stored
    entry.response = {
        "response": {
            "status": "201 Created" if result.created else "200 OK",
            "location": stored.location,
            "etag": stored.etag,
            "lastModified": fhir_instant(stored.last_updated),
        },
        "_stored": stored,
    }


def _response_entry(entry: _Entry, representation: bool) -> dict[str, Any]:
    out = {k: v for k, v in entry.response.items() if k != "_stored"}
    stored = entry.response.get("_stored")
    if isinstance(stored, StoredResource):
        out["fullUrl"] = f"{stored.resource_type}/{stored.id}"
        if representation and stored.json is not None:
            out["resource"] = orjson.Fragment(stored.json)
    return out


# --- response Bundles ----------------------------------------------------------------------


def searchset(
    result: SearchResult,
    *,
    base: str,
    self_url: str,
    next_url: str | None,
    outcome: dict[str, Any] | None = None,
) -> bytes:
    """A `searchset` Bundle built around the stored JSON bytes (no re-parsing)."""
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{base}/{row.resource_type}/{row.id}",
            "resource": orjson.Fragment(row.json),
            "search": {"mode": mode},
        }
        for rows, mode in ((result.matches, "match"), (result.included, "include"))
        for row in rows
    ]
    if outcome is not None:
        entries.append({"resource": outcome, "search": {"mode": "outcome"}})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "id": new_id(), "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    bundle["link"] = [{"relation": "self", "url": self_url}]
    if next_url:
        bundle["link"].append({"relation": "next", "url": next_url})
    bundle["entry"] = entries
    return orjson.dumps(bundle)


def history_bundle(
    versions: list[StoredResource], *, base: str, self_url: str, next_url: str | None
) -> bytes:
    """A `history` Bundle, newest version first; deletions carry no resource."""
    entries = []
    for v in versions:
        entry: dict[str, Any] = {"fullUrl": f"{base}/{v.resource_type}/{v.id}"}
        if v.json is not None:
            entry["resource"] = orjson.Fragment(v.json)
        method = "DELETE" if v.deleted else ("POST" if v.version_id == 1 else "PUT")
        url = v.resource_type if method == "POST" else f"{v.resource_type}/{v.id}"
        entry["request"] = {"method": method, "url": url}
        entry["response"] = {
            "status": "204" if v.deleted else ("201" if v.version_id == 1 else "200"),
            "etag": v.etag,
            "lastModified": fhir_instant(v.last_updated),
        }
        entries.append(entry)
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "id": new_id(),
            "type": "history",
            "link": links,
            "entry": entries,
        }
    )
