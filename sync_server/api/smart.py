"""SMART App Launch: discovery document and the authorize + consent page.

`GET /auth/authorize` checks the client and redirect URI, then shows a sign-in
and consent form listing the requested scopes; `POST /auth/authorize` signs the
user in (password + TOTP, with lockout and audit like `/auth/login`) and
redirects back with a one-time code, or with `error=access_denied`.
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from shared_models.errors import ClinicError
from sync_server.api.auth import validation_message
from sync_server.api.deps import IdentityDep, SessionDep, source_ip
from sync_server.services import authentication, smart, smart_apps

router = APIRouter(tags=["SMART on FHIR"])

_AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
)


def _server_root(request: Request) -> str:
    configured = request.app.state.settings.base_url
    return (configured or str(request.base_url)).rstrip("/")


@router.get("/fhir/R4/.well-known/smart-configuration")
def smart_configuration(request: Request) -> dict[str, Any]:
    root = _server_root(request)
    return {
        "issuer": root,
        "authorization_endpoint": f"{root}/auth/authorize",
        "token_endpoint": f"{root}/auth/token",
        "revocation_endpoint": f"{root}/auth/logout",
        "token_endpoint_auth_methods_supported": ["none"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(smart.SUPPORTED_SCOPES_EXAMPLES),
        "capabilities": [
            "launch-standalone",
            "client-public",
            "context-standalone-patient",
            "permission-patient",
            "permission-user",
            "permission-v2",
            "permission-v1",
            "permission-offline",
            "sso-openid-connect",
        ],
    }


def _page(params: dict[str, str], scopes: frozenset[str], client_name: str, error: str) -> str:
    hidden = "".join(
        f'<input type="hidden" name="{k}" value="{escape(params.get(k, ""))}">'
        for k in _AUTHORIZE_PARAMS
    )
    items = "".join(f"<li>{escape(s)}</li>" for s in sorted(scopes))
    patient = (
        '<label>Patient id <input name="patient" required></label>'
        if "launch/patient" in scopes
        else ""
    )
    alert = f'<p role="alert">{escape(error)}</p>' if error else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Authorize app</title></head>"
        f"<body><h1>{escape(client_name)} asks for access</h1>{alert}<ul>{items}</ul>"
        f'<form method="post" action="/auth/authorize">{hidden}'
        '<label>Username <input name="username" autocomplete="username" required></label>'
        '<label>Password <input name="password" type="password" required></label>'
        '<label>Code <input name="otp" inputmode="numeric" autocomplete="one-time-code"></label>'
        f"{patient}"
        '<button name="decision" value="approve">Allow</button>'
        '<button name="decision" value="deny" formnovalidate>Deny</button>'
        "</form></body></html>"
    )


def _redirect(uri: str, **params: str) -> RedirectResponse:
    sep = "&" if "?" in uri else "?"
    return RedirectResponse(f"{uri}{sep}{urlencode(params)}", status_code=303)


@router.get("/auth/authorize", response_class=HTMLResponse)
def authorize_page(request: Request, session: SessionDep) -> HTMLResponse:
    """The sign-in and consent page (400/404 OperationOutcome for a bad client or redirect)."""
    params = dict(request.query_params)
    checked = smart_apps.check_authorize_request(session, params)
    return HTMLResponse(_page(params, checked.scopes, checked.client.name, ""))


Field = Annotated[str, Form(max_length=2048)]


@router.post("/auth/authorize", response_class=HTMLResponse)
def authorize_submit(
    request: Request,
    session: SessionDep,
    identity: IdentityDep,
    client_id: Field,
    redirect_uri: Field,
    decision: Annotated[str, Form(max_length=16)],
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    otp: Annotated[str, Form(max_length=16)] = "",
    patient: Annotated[str, Form(max_length=128)] = "",
    response_type: Field = "",
    scope: Field = "",
    state: Field = "",
    aud: Field = "",
    code_challenge: Field = "",
    code_challenge_method: Field = "",
) -> Any:
    """Sign in, record consent, and redirect back with a code (or `access_denied`)."""
    params = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": response_type,
        "scope": scope,
        "state": state,
        "aud": aud,
        "code_challenge": code_challenge,
        "code_challenge_method": code_challenge_method,
    }
    checked = smart_apps.check_authorize_request(session, params)
    if decision != "approve":
        return _redirect(checked.redirect_uri, error="access_denied", state=checked.state)
    user = authentication.authenticate(
        session, identity, username=username, password=password, otp=otp,
        workstation_id=None, source_ip=source_ip(request),
    )  # fmt: skip
    try:
        code = smart_apps.approve(
            session, identity, checked, user,
            launch_patient=patient or None, source_ip=source_ip(request),
        )  # fmt: skip
    except ClinicError as exc:
        page = _page(params, checked.scopes, checked.client.name, validation_message(exc))
        return HTMLResponse(page, status_code=403 if exc.help_topic == "access" else 400)
    return _redirect(checked.redirect_uri, code=code, state=checked.state)
