"""Typed request dependencies: one session per request, the caller's context, the repository.

`SessionDep` commits once, after the handler and before the response is sent
(durable before acknowledged). A `ClinicError` (a denial, a validation or
version error) still commits: the repository has rolled its own work back to
a savepoint, and what remains is the audit record of the failed attempt.
Anything unexpected rolls back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import orjson
from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from shared_models.errors import AuthenticationFailed, ClinicError, ValidationFailed
from sync_server.services.authentication import request_context
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import FhirRepository
from sync_server.services.identity import IdentityRuntime


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for the request, committed (or rolled back) and closed in one thread hop.

    The dependencies that do no I/O are `async def`: every sync dependency costs
    a hop to the thread pool and back, which was most of a read's CPU time.
    Opening a `Session` does no I/O (it connects on first use), so only the end
    of the unit of work goes to the pool, shielded so a client that disconnects
    cannot leave the connection checked out.
    """
    session: Session = request.app.state.sessionmaker()
    commit = True
    try:
        yield session
    except ClinicError:
        raise
    except BaseException:
        commit = False
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(_finish, session, commit=commit)


def _finish(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_identity(request: Request) -> IdentityRuntime:
    identity: IdentityRuntime = request.app.state.identity
    return identity


IdentityDep = Annotated[IdentityRuntime, Depends(get_identity)]


def bearer_token(request: Request) -> str | None:
    """The bearer token of the request, if any (never logged, never stored whole)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def source_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def get_request_context(
    request: Request, session: SessionDep, identity: IdentityDep
) -> RequestContext:
    """The signed-in user behind the bearer token: 401 OperationOutcome without one.

    Roles, locations, disabled state and break-the-glass grants are read fresh
    from the database on every request; the token only says who it is.
    """
    token = bearer_token(request)
    if token is None:
        raise AuthenticationFailed("Bearer token required")
    return request_context(session, identity, token, source_ip=source_ip(request))


ContextDep = Annotated[RequestContext, Depends(get_request_context)]


async def get_repository(request: Request, session: SessionDep, ctx: ContextDep) -> FhirRepository:
    state = request.app.state
    return FhirRepository(session, ctx, state.access_guard, state.audit_sink)


RepositoryDep = Annotated[FhirRepository, Depends(get_repository)]

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


async def fhir_body(request: Request) -> Any:
    """The request body parsed as JSON (FHIR or plain JSON content types)."""
    content_type = request.headers.get("content-type", "application/fhir+json")
    if content_type.split(";")[0].strip().lower() not in _JSON_TYPES:
        raise HTTPException(415, "Send application/fhir+json or application/json")
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValidationFailed(
            "malformed JSON", issues=[("", "The body is not well-formed JSON")]
        ) from None


BodyDep = Annotated[Any, Depends(fhir_body)]
