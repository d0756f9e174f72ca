"""Every error leaves the API as a FHIR OperationOutcome: no stack trace, no PHI.

`ClinicError`s raised anywhere map to their status (`shared_models.outcomes`),
framework errors (404 route, 405, request validation) to outcomes with the
same status, and anything unexpected to a bare 500. The log gets the error
type and the route template, never the message (driver and validation
messages can echo submitted values).
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared_models import outcomes
from shared_models.errors import ClinicError
from sync_server.services.fhir_repository import PreconditionFailed, ResourceGone

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"


def fhir_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A FHIR JSON response; `body` is a dict or already-serialised bytes."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content, status_code=status, media_type=FHIR_JSON, headers=headers)


def error_status(exc: ClinicError) -> tuple[int, dict[str, Any]]:
    status, body = outcomes.from_error(exc)
    if isinstance(exc, ResourceGone):
        status = 410
    elif isinstance(exc, PreconditionFailed):
        status = 412
    return status, body


_HTTP_CODES = {
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-long",
    415: "not-supported",
}


def _clinic_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClinicError)
    status, body = error_status(exc)
    return fhir_response(body, status)


def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "processing")
    text = exc.detail if isinstance(exc.detail, str) else "Request failed"
    body = outcomes.outcome(outcomes.issue("error", code, text))
    return fhir_response(body, exc.status_code, headers=dict(exc.headers or {}))


def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [
        outcomes.issue(
            "error",
            "invalid",
            str(err.get("msg", "invalid")),
            ".".join(str(p) for p in err.get("loc", ())),
        )
        for err in exc.errors()
    ]
    return fhir_response(outcomes.outcome(*issues), 400)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ClinicError, _clinic_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # Starlette wraps in reverse order: the size limit sits inside the catch-all.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=app.state.settings.max_body_bytes)
    app.add_middleware(UnexpectedErrorMiddleware)


def _send_outcome(send: Send, status: int, body: dict[str, Any]) -> Any:
    payload = orjson.dumps(body)

    async def go() -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", FHIR_JSON.encode()),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return go()


class UnexpectedErrorMiddleware:
    """Turns any unexpected exception into a 500 OperationOutcome and a PHI-free log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            route = getattr(scope.get("route"), "path", "?")
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error(
                "unexpected %s on %s %s\n%s", type(exc).__name__, scope["method"], route, frames
            )
            if not started:
                await _send_outcome(send, 500, outcomes.server_error())


class BodySizeLimitMiddleware:
    """Refuses request bodies over `max_bytes` (declared or streamed) with a 413 outcome."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.too_big = outcomes.outcome(
            outcomes.issue("error", "too-long", f"Request body over {max_bytes} bytes")
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = self.too_big
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_outcome(send, 413, too_big)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _send_outcome(send, 413, too_big)


class _BodyTooLarge(Exception):
    pass
