"""FHIR R4 REST at /fhir/R4: thin routes that parse, call the repository, shape the response."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Depends, Request
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response
from starlette.routing import Route

from shared_models import outcomes
from shared_models.errors import NotFound, ValidationFailed
from shared_models.fhir_validation import SUPPORTED_TYPES
from sync_server.api.deps import BodyDep, in_unit_of_work
from sync_server.api.errors import fhir_response
from sync_server.services.bundles import history_bundle, process_bundle, searchset
from sync_server.services.capability import capability_statement
from sync_server.services.fhir_repository import FhirRepository, StoredResource, WriteResult
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


# Every route below runs its whole unit of work (bearer context, repository call,
# commit) in one thread hop; reads, searches and history in autocommit (their
# only write is the audit row): see `deps.in_unit_of_work`.


@router.post("")
@router.post("/", include_in_schema=False)
async def transaction_or_batch(request: Request, body: BodyDep) -> Response:
    representation = _prefer(request).get("return") == "representation"
    return await in_unit_of_work(
        request,
        lambda repo: fhir_response(process_bundle(repo, body, representation=representation)),
    )


def _history_response(
    request: Request, repo: FhirRepository, resource_type: str | None, resource_id: str | None
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
async def system_history(request: Request) -> Response:
    return await in_unit_of_work(
        request, lambda repo: _history_response(request, repo, None, None), read_only=True
    )


def _search(
    request: Request, repo: FhirRepository, resource_type: str, items: list[Any]
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
async def search_type(request: Request, resource_type: str) -> Response:
    items = request.query_params.multi_items()
    return await in_unit_of_work(
        request, lambda repo: _search(request, repo, resource_type, items), read_only=True
    )


async def _form_items(request: Request) -> list[tuple[str, str]]:
    return parse_qsl((await request.body()).decode(), keep_blank_values=True)


@router.post("/{resource_type}/_search")
async def search_post(
    request: Request,
    resource_type: str,
    form: Annotated[list[tuple[str, str]], Depends(_form_items)],
) -> Response:
    """Search with form-encoded parameters (for long queries): same as GET."""
    items = [*request.query_params.multi_items(), *form]
    return await in_unit_of_work(
        request, lambda repo: _search(request, repo, resource_type, items), read_only=True
    )


def _check_body(body: Any, resource_type: str) -> dict[str, Any]:
    _check_type(resource_type)
    if not isinstance(body, dict) or body.get("resourceType") != resource_type:
        raise ValidationFailed(
            "resourceType does not match the URL",
            issues=[("resourceType", f"Expected {resource_type}")],
        )
    return body


@router.post("/{resource_type}")
async def create(request: Request, body: BodyDep, resource_type: str) -> Response:
    if_none_exist = request.headers.get("if-none-exist")

    def work(repo: FhirRepository) -> WriteResult:
        return repo.create(_check_body(body, resource_type), if_none_exist=if_none_exist)

    return _write_response(request, await in_unit_of_work(request, work))


@router.get("/{resource_type}/_history")
async def type_history(request: Request, resource_type: str) -> Response:
    def work(repo: FhirRepository) -> Response:
        _check_type(resource_type)
        return _history_response(request, repo, resource_type, None)

    return await in_unit_of_work(request, work, read_only=True)


@router.get("/{resource_type}/{resource_id}")
async def read(request: Request, resource_type: str, resource_id: str) -> Response:
    def work(repo: FhirRepository) -> StoredResource:
        _check_type(resource_type)
        return repo.read(resource_type, resource_id)

    return _resource_response(
        await in_unit_of_work(request, work, read_only=True), base_url(request)
    )


@router.put("/{resource_type}/{resource_id}")
async def update(request: Request, body: BodyDep, resource_type: str, resource_id: str) -> Response:
    if_match = request.headers.get("if-match")

    def work(repo: FhirRepository) -> WriteResult:
        resource = _check_body(body, resource_type)
        expected = _version_of(if_match)
        return repo.update(resource_type, resource_id, resource, expected_version=expected)

    return _write_response(request, await in_unit_of_work(request, work))


@router.delete("/{resource_type}/{resource_id}")
async def delete(request: Request, resource_type: str, resource_id: str) -> Response:
    if_match = request.headers.get("if-match")

    def work(repo: FhirRepository) -> WriteResult:
        _check_type(resource_type)
        return repo.delete(resource_type, resource_id, expected_version=_version_of(if_match))

    result = await in_unit_of_work(request, work)
    return Response(status_code=204, headers={"ETag": result.stored.etag})


@router.get("/{resource_type}/{resource_id}/_history")
async def instance_history(request: Request, resource_type: str, resource_id: str) -> Response:
    def work(repo: FhirRepository) -> Response:
        _check_type(resource_type)
        return _history_response(request, repo, resource_type, resource_id)

    return await in_unit_of_work(request, work, read_only=True)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
async def vread(
    request: Request, resource_type: str, resource_id: str, version_id: str
) -> Response:
    def work(repo: FhirRepository) -> StoredResource:
        _check_type(resource_type)
        if not version_id.isdigit():
            raise NotFound("Version not found")
        return repo.vread(resource_type, resource_id, int(version_id))

    return _resource_response(
        await in_unit_of_work(request, work, read_only=True), base_url(request)
    )


class _TypeConvertor(Convertor[str]):
    regex = "|".join(sorted(SUPPORTED_TYPES))

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class _IdConvertor(_TypeConvertor):
    regex = r"[A-Za-z0-9\-\.]{1,64}"  # FHIR id: never `_history`, `_search`, `$op`


register_url_convertor("fhir_type", _TypeConvertor())
register_url_convertor("fhir_id", _IdConvertor())


def _get_route(path: str, handler: Callable[[Request], Awaitable[Response]]) -> Route:
    async def endpoint(request: Request) -> Response:
        request.scope["route"] = route  # for the metrics label; FastAPI sets it on its own
        return await handler(request)

    route = Route(f"{router.prefix}{path}", endpoint, methods=["GET"], include_in_schema=False)
    route.methods = {"GET"}  # not the HEAD Starlette adds: as the FastAPI routes
    route.path = route.path_format  # the label: the FastAPI route's template
    return route


async def _read_by_path(request: Request) -> Response:
    params = request.path_params
    return await read(request, params["resource_type"], params["resource_id"])


async def _search_by_path(request: Request) -> Response:
    return await search_type(request, request.path_params["resource_type"])


def fast_read_route() -> Route:
    """`read` as a plain Starlette route, for the app to match before every router.

    Reads by id are the hottest request. Through FastAPI they pay for a walk
    over the routes of every router included before this one and for the
    dependency solver (together about a fifth of a read's CPU). This route
    matches only a supported type and a valid FHIR id - anything else still
    goes through the routers - and calls the same `read`.
    """
    return _get_route("/{resource_type:fhir_type}/{resource_id:fhir_id}", _read_by_path)


def fast_search_route() -> Route:
    """`search_type` (GET) the same way; the app adds it after the routers that
    serve a type's search themselves (`admin`: AuditEvent), before this router.
    """
    return _get_route("/{resource_type:fhir_type}", _search_by_path)
