"""The sync protocol at /sync (DESIGN.md, "Sync protocol (contract)"): thin routes.

Every route is authenticated (the bearer token behind `RepositoryDep`), and the
services record the audit trail: the pull with the patients it delivered, a
push's writes and refusals (an event per patient, action and outcome of the
batch, naming its changes), each conflict stored, listed and resolved. The
session commits once, after the handler: the answers are durable before the
client sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.routing import APIRoute
from starlette.responses import Response

from shared_models.sync_messages import (
    DEFAULT_PULL_LIMIT,
    INITIAL_CURSOR,
    MAX_PULL_LIMIT,
    ConflictState,
    PushRequest,
    ResolveRequest,
)
from sync_server.api.deps import RepositoryDep
from sync_server.api.metrics import record_pull, record_push_results
from sync_server.services import conflicts, sync_pull, sync_push


class _OrjsonRequest(Request):
    """A request whose JSON body is parsed with orjson (a push carries 500 resources).

    `orjson.JSONDecodeError` is a `json.JSONDecodeError`, so a malformed body is
    still FastAPI's 422 answer.
    """

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class _OrjsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parse_with_orjson(request: Request) -> Response:
            return await handler(_OrjsonRequest(request.scope, request.receive))

        return parse_with_orjson


router = APIRouter(prefix="/sync", tags=["Sync"], route_class=_OrjsonRoute)

_JSON = "application/json"


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type=_JSON)


@router.get("/pull")
def pull(
    repo: RepositoryDep,
    cursor: Annotated[str, Query(max_length=4096)] = INITIAL_CURSOR,
    limit: Annotated[int, Query(ge=1, le=MAX_PULL_LIMIT)] = DEFAULT_PULL_LIMIT,
    estimate: bool = False,
) -> Response:
    """Changes after `cursor` for the caller's scope: `{changes, cursor, has_more}`.

    `estimate=true` adds `remaining`: about how many changes follow this page. The
    last page adds `open_conflicts`, the fingerprint of the caller's review queue.
    """
    page = sync_pull.pull(
        session=repo.session,
        ctx=repo.ctx,
        guard=repo.guard,
        audit=repo.audit,
        cursor=cursor,
        limit=limit,
        estimate=estimate,
    )
    record_pull(len(page.changes))
    return Response(page.render(), media_type=_JSON)


@router.post("/push")
def push(repo: RepositoryDep, request: PushRequest) -> Response:
    """One result per change, in the request's order: `{results: [...]}`."""
    results = sync_push.push(repo=repo, request=request)
    record_push_results(r.status for r in results)
    # The fields are JSON values already: no model_dump walk through every resource.
    return _json({"results": [dict(r) for r in results]})


@router.get("/conflicts")
def list_conflicts(
    repo: RepositoryDep,
    status: ConflictState = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> Response:
    """The review queue: conflicts on patients the caller may see."""
    records = conflicts.list_conflicts(repo=repo, status=status, limit=limit)
    # As for the push: the fields are JSON values (and datetimes, written by orjson
    # in the same RFC 3339 form as pydantic's): no model_dump walk through 3,000 resources.
    return _json({"conflicts": [dict(r) for r in records]})


@router.post("/conflicts/{conflict_id}/resolve")
def resolve_conflict(repo: RepositoryDep, conflict_id: str, request: ResolveRequest) -> Response:
    """Keep the server's version, the workstation's, or a merged resource."""
    record = conflicts.resolve_conflict(repo=repo, conflict_id=conflict_id, request=request)
    return _json(record.model_dump(mode="json"))
