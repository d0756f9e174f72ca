"""Typed request dependencies: one session per request, the caller's context, the repository.

`SessionDep` commits once, after the handler and before the response is sent
(durable before acknowledged). A `ClinicError` (a denial, a validation or
version error) still commits: the repository has rolled its own work back to
a savepoint, and what remains is the audit record of the failed attempt.
Anything unexpected rolls back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Annotated, Any, TypeVar

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


T = TypeVar("T")

#: Threads for `in_unit_of_work`, one pool per process. asyncio's executor
#: hand-off costs less CPU than anyio's thread pool (capacity limiter, cancel
#: scopes). 16 stay within the engine's 20 connections (10 + 10 overflow), so a
#: job never waits for a connection while holding a thread.
_UNIT_OF_WORK_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="unit-of-work")


async def in_unit_of_work(
    request: Request, work: Callable[[FhirRepository], T], *, read_only: bool = False
) -> T:
    """Run `work` on the caller's repository as one unit of work, in ONE thread hop.

    The same steps and rules as `RepositoryDep` (session, bearer context, the
    work, commit - also after a `ClinicError`, whose audit record must stay -
    or rollback, close), but `RepositoryDep` costs three hops to the thread
    pool and back (context, handler, commit), and under load those hand-offs
    were most of a FHIR request's CPU. A started job always runs to its end, so
    a client that disconnects cannot leave the unit of work half done.

    `read_only` work (reads, searches, history) writes nothing but its audit
    row, so it runs in autocommit: each statement is its own transaction and the
    audit INSERT is durable when it returns, before the response is sent. That
    saves the BEGIN and COMMIT round trips of every read.
    """
    loop = asyncio.get_running_loop()
    job = partial(_unit_of_work, request, work, read_only=read_only)
    return await loop.run_in_executor(_UNIT_OF_WORK_THREADS, job)


def _context(request: Request, session: Session, identity: IdentityRuntime) -> RequestContext:
    """`get_request_context`, or what `app.dependency_overrides` puts in its place.

    The unit of work calls it directly instead of through FastAPI's resolver,
    so an override (a zero-argument callable, as tests use) is honoured here.
    """
    override = request.app.dependency_overrides.get(get_request_context)
    if override is not None:
        ctx: RequestContext = override()
        return ctx
    return get_request_context(request, session, identity)


def _unit_of_work(request: Request, work: Callable[[FhirRepository], T], *, read_only: bool) -> T:
    state = request.app.state
    session: Session = state.sessionmaker()
    commit = True
    try:
        if read_only:
            session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        ctx = _context(request, session, state.identity)
        return work(FhirRepository(session, ctx, state.access_guard, state.audit_sink))
    except ClinicError:
        raise
    except BaseException:
        commit = False
        raise
    finally:
        _finish(session, commit=commit)


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
