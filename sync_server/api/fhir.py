"""FHIR R4 REST at /fhir/R4: thin routes that parse, call the repository, shape the response."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from shared_models import outcomes
from shared_models.errors import NotFound, ValidationFailed
from shared_models.fhir_validation import SUPPORTED_TYPES
from sync_server.api.deps import BodyDep, RepositoryDep
from sync_server.api.errors import fhir_response
from sync_server.services.bundles import history_bundle, process_bundle, searchset
from sync_server.services.capability import capability_statement
from sync_server.services.fhir_repository import StoredResource, WriteResult
from sync_server.services.search_params import date_range

router = APIRouter(prefix="/fhir/R4", tags=["FHIR R4"])

SOFTWARE_VERSION = "0.1.0"


def base_url(request: Request) -> str:
    configured = request.app.state.settings.base_url
    return (configured or str(request.base_url)).rstrip("/") + "/fhir/R4"


def _check_type(resource_type: str) -> None:
    if resource_type not in SUPPORTED_TYPES:
        raise NotFound(f"Resource type {resource_type} is not supported here")


def _prefer(request: Request) -> dict[str, str]:
    prefs: dict[str, str] = {}
    for part in request.headers.get("prefer", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            prefs[key.lower()] = value.strip().strip('"').lower()
    return prefs


def _version_of(etag: str | None) -> int | None:
    if not etag:
        return None
    digits = etag.strip().removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise ValidationFailed("bad If-Match", issues=[("If-Match", 'Expected an ETag: W/"3"')])
    return int(digits)


def _headers(stored: StoredResource, base: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": format_datetime(stored.last_updated.astimezone(UTC), usegmt=True),
        "Location": f"{base}/{stored.location}",
    }


def _resource_response(stored: StoredResource, base: str, status: int = 200) -> Response:
    return fhir_response(stored.json or b"{}", status, _headers(stored, base))


def _write_response(request: Request, result: WriteResult) -> Response:
    stored = result.stored
    status = 201 if result.created else 200
    base = base_url(request)
    prefer = _prefer(request).get("return", "representation")
    if prefer == "minimal":
        return Response(status_code=status, headers=_headers(stored, base))
    if prefer == "operationoutcome":
        info = outcomes.information(f"{stored.resource_type} saved as version {stored.version_id}")
        return fhir_response(info, status, _headers(stored, base))
    return _resource_response(stored, base, status)


def _page_links(
    request: Request, offset: int, count: int, has_next: bool
) -> tuple[str, str | None]:
    items = [(k, v) for k, v in request.query_params.multi_items() if k != "_offset"]
    path = f"{base_url(request)}{request.url.path.removeprefix('/fhir/R4')}"
    self_url = f"{path}?{urlencode([*items, ('_offset', str(offset))])}"
    next_url = None
    if has_next:
        next_url = f"{path}?{urlencode([*items, ('_offset', str(offset + count))])}"
    return self_url, next_url


@router.get("/metadata")
def metadata(request: Request) -> Response:
    return fhir_response(capability_statement(base_url(request), SOFTWARE_VERSION))


@router.post("")
@router.post("/", include_in_schema=False)
def transaction_or_batch(request: Request, repo: RepositoryDep, body: BodyDep) -> Response:
    representation = _prefer(request).get("return") == "representation"
    return fhir_response(process_bundle(repo, body, representation=representation))


def _history_response(
    request: Request, repo: Any, resource_type: str | None, resource_id: str | None
) -> Response:
    params = dict(request.query_params)
    count = min(int(params.get("_count", "50") or 50), request.app.state.settings.max_page_size)
    offset = int(params.get("_offset", "0") or 0)
    since: datetime | None = date_range(params["_since"])[0] if "_since" in params else None
    versions, has_next = repo.history(
        resource_type, resource_id, since=since, count=count, offset=offset
    )
    self_url, next_url = _page_links(request, offset, count, has_next)
    return fhir_response(
        history_bundle(versions, base=base_url(request), self_url=self_url, next_url=next_url)
    )


@router.get("/_history")
def system_history(request: Request, repo: RepositoryDep) -> Response:
    return _history_response(request, repo, None, None)


def _search(
    request: Request, repo: RepositoryDep, resource_type: str, items: list[Any]
) -> Response:
    _check_type(resource_type)
    settings = request.app.state.settings
    strict = _prefer(request).get("handling") == "strict"
    result = repo.search(
        resource_type,
        items,
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
        strict=strict,
    )
    query = result.query
    self_url, next_url = _page_links(request, query.offset, query.count, result.has_next)
    warning = None
    if query.ignored:
        warning = outcomes.outcome(
            outcomes.issue(
                "warning", "not-supported", "Ignored unknown search parameters: "
                + ", ".join(sorted(set(query.ignored)))
            )
        )  # fmt: skip
    body = searchset(
        result, base=base_url(request), self_url=self_url, next_url=next_url, outcome=warning
    )
    return fhir_response(body)


@router.get("/{resource_type}")
def search_type(request: Request, repo: RepositoryDep, resource_type: str) -> Response:
    return _search(request, repo, resource_type, request.query_params.multi_items())


async def _form_items(request: Request) -> list[tuple[str, str]]:
    return parse_qsl((await request.body()).decode(), keep_blank_values=True)


@router.post("/{resource_type}/_search")
def search_post(
    request: Request,
    repo: RepositoryDep,
    resource_type: str,
    form: Annotated[list[tuple[str, str]], Depends(_form_items)],
) -> Response:
    """Search with form-encoded parameters (for long queries): same as GET."""
    return _search(request, repo, resource_type, [*request.query_params.multi_items(), *form])


@router.post("/{resource_type}")
def create(request: Request, repo: RepositoryDep, body: BodyDep, resource_type: str) -> Response:
    _check_type(resource_type)
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        raise ValidationFailed(
            "resourceType does not match the URL",
            issues=[("resourceType", f"Expected {resource_type}")],
        )
    result = repo.create(body, if_none_exist=request.headers.get("if-none-exist"))
    return _write_response(request, result)


@router.get("/{resource_type}/_history")
def type_history(request: Request, repo: RepositoryDep, resource_type: str) -> Response:
    _check_type(resource_type)
    return _history_response(request, repo, resource_type, None)


@router.get("/{resource_type}/{resource_id}")
def read(request: Request, repo: RepositoryDep, resource_type: str, resource_id: str) -> Response:
    _check_type(resource_type)
    return _resource_response(repo.read(resource_type, resource_id), base_url(request))


@router.put("/{resource_type}/{resource_id}")
def update(
    request: Request, repo: RepositoryDep, body: BodyDep, resource_type: str, resource_id: str
) -> Response:
    _check_type(resource_type)
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        raise ValidationFailed(
            "resourceType does not match the URL",
            issues=[("resourceType", f"Expected {resource_type}")],
        )
    expected = _version_of(request.headers.get("if-match"))
    return _write_response(
        request, repo.update(resource_type, resource_id, body, expected_version=expected)
    )


@router.delete("/{resource_type}/{resource_id}")
def delete(request: Request, repo: RepositoryDep, resource_type: str, resource_id: str) -> Response:
    _check_type(resource_type)
    expected = _version_of(request.headers.get("if-match"))
    result = repo.delete(resource_type, resource_id, expected_version=expected)
    return Response(status_code=204, headers={"ETag": result.stored.etag})


@router.get("/{resource_type}/{resource_id}/_history")
def instance_history(
    request: Request, repo: RepositoryDep, resource_type: str, resource_id: str
) -> Response:
    _check_type(resource_type)
    return _history_response(request, repo, resource_type, resource_id)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
def vread(
    request: Request, repo: RepositoryDep, resource_type: str, resource_id: str, version_id: str
) -> Response:
    _check_type(resource_type)
    if not version_id.isdigit():
        raise NotFound("Version not found")
    stored = repo.vread(resource_type, resource_id, int(version_id))
    return _resource_response(stored, base_url(request))
