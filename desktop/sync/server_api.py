"""THE one HTTP client of the desktop: httpx with timeouts, typed answers, typed errors.

Sign-in (`/auth/login`), policy (`/auth/policy`) and token refresh
(`/auth/token`) live here; the sync engine adds its `/sync/...` calls on top
of `authed_request`, which refreshes an expired access token once (rotation)
and hands the new pair to `on_tokens` so the caller can keep it in the keychain.
Error bodies are FHIR OperationOutcomes; their diagnostics go into `detail`
(the log), never into the user message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from shared_models.errors import (
    AuthenticationFailed,
    ClinicError,
    Forbidden,
    NetworkUnavailable,
    NotFound,
    ValidationFailed,
    VersionConflict,
)
from shared_models.outcomes import diagnostics_of

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclass(frozen=True)
class Policy:
    offline_signin_days: int
    idle_lock_minutes: int
    wipe: bool

    @classmethod
    def from_json(cls, data: Any) -> Policy:
        try:
            return cls(
                offline_signin_days=int(data["offline_signin_days"]),
                idle_lock_minutes=int(data["idle_lock_minutes"]),
                wipe=bool(data.get("wipe", False)),
            )
        except (KeyError, TypeError, ValueError):
            raise ClinicError("server sent a malformed policy") from None


@dataclass(frozen=True)
class UserInfo:
    username: str
    roles: tuple[str, ...]
    locations: tuple[str, ...]
    #: `Practitioner/ID` of the user, if linked.
    practitioner: str | None


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


@dataclass(frozen=True)
class LoginResult:
    tokens: TokenPair
    user: UserInfo
    policy: Policy


def _tokens(data: dict[str, Any]) -> TokenPair:
    try:
        return TokenPair(
            str(data["access_token"]), str(data["refresh_token"]), int(data.get("expires_in", 0))
        )
    except (KeyError, TypeError, ValueError):
        raise ClinicError("server sent a malformed token response") from None


class ServerApi:
    """A session with one server. Not thread-safe: one owner at a time."""

    def __init__(
        self,
        base_url: str,
        *,
        verify: bool | str = True,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout, verify=verify, transport=transport
        )
        self.tokens: TokenPair | None = None
        #: Called with every new token pair (login, refresh), e.g. to store it in the keychain.
        self.on_tokens: Callable[[TokenPair], None] | None = None

    def close(self) -> None:
        self._client.close()

    # -- auth ------------------------------------------------------------------

    def login(self, username: str, password: str, otp: str, workstation_id: str) -> LoginResult:
        body = {"username": username, "password": password, "otp": otp,
                "workstation_id": workstation_id}  # fmt: skip
        data = self._json(self._send("POST", "/auth/login", json=body))
        try:
            user = data["user"]
            info = UserInfo(
                username=str(user["username"]),
                roles=tuple(user.get("roles", [])),
                locations=tuple(user.get("locations", [])),
                practitioner=user.get("practitioner"),
            )
        except (KeyError, TypeError):
            raise ClinicError("server sent a malformed login response") from None
        result = LoginResult(_tokens(data), info, Policy.from_json(data.get("policy")))
        self._set_tokens(result.tokens)
        return result

    def policy(self, workstation_id: str) -> Policy:
        response = self.authed_request(
            "GET", "/auth/policy", params={"workstation_id": workstation_id}
        )
        return Policy.from_json(self._json(response))

    def refresh(self) -> TokenPair:
        """Trade the refresh token for a new pair (the old one is spent: rotation)."""
        if self.tokens is None:
            raise AuthenticationFailed("no refresh token")
        form = {"grant_type": "refresh_token", "refresh_token": self.tokens.refresh_token}
        try:
            response = self._send("POST", "/auth/token", data=form)
        except ValidationFailed as exc:  # OAuth2 answers 400 invalid_grant
            raise AuthenticationFailed(
                exc.detail, user_message="Your session has ended. Sign in online again."
            ) from None
        pair = _tokens(self._json(response))
        self._set_tokens(pair)
        return pair

    def _set_tokens(self, pair: TokenPair) -> None:
        self.tokens = pair
        if self.on_tokens is not None:
            self.on_tokens(pair)

    # -- sync protocol (used by desktop.sync.engine) -----------------------------

    def sync_push(self, body: bytes) -> bytes:
        """`POST /sync/push` with a request already encoded; the raw JSON answer."""
        headers = {"Content-Type": "application/json"}
        return self.authed_request("POST", "/sync/push", content=body, headers=headers).content

    def sync_pull(self, cursor: str, limit: int, *, estimate: bool = False) -> bytes:
        """`GET /sync/pull`: the raw JSON page (the engine stores resources as received).

        `estimate` asks the server to add `remaining`, about how many changes follow.
        """
        params = {"cursor": cursor, "limit": str(limit)}
        if estimate:
            params["estimate"] = "true"
        return self.authed_request("GET", "/sync/pull", params=params).content

    def sync_conflicts(self, status: str = "open", limit: int = 1000) -> Any:
        """`GET /sync/conflicts`: the review queue the caller may see."""
        params = {"status": status, "limit": str(limit)}
        return self._json(self.authed_request("GET", "/sync/conflicts", params=params))

    def sync_resolve(self, conflict_id: str, body: dict[str, Any]) -> Any:
        """`POST /sync/conflicts/{id}/resolve`: the resolved conflict record."""
        path = f"/sync/conflicts/{quote(conflict_id, safe='')}/resolve"
        return self._json(self.authed_request("POST", path, json=body))

    def read_resource(self, resource_type: str, resource_id: str) -> bytes:
        """`GET /fhir/R4/{type}/{id}`: the server's current version as received (JSON).

        Raises `NotFound` when the server holds no such resource (or it was deleted).
        """
        path = f"/fhir/R4/{quote(resource_type, safe='')}/{quote(resource_id, safe='')}"
        return self.authed_request("GET", path).content

    def sync_access_log(self, body: bytes) -> Any:
        """`POST /sync/access-log`: offline chart reads for the server's audit trail."""
        headers = {"Content-Type": "application/json"}
        response = self.authed_request("POST", "/sync/access-log", content=body, headers=headers)
        return self._json(response)

    # -- plumbing for every authenticated call ----------------------------------

    def authed_request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A call with the bearer token; on 401 refresh once and retry."""
        if self.tokens is None:
            raise AuthenticationFailed("not signed in to the server")
        extra = kwargs.pop("headers", {})
        try:
            return self._send(method, path, headers={**extra, **self._bearer()}, **kwargs)
        except AuthenticationFailed:
            self.refresh()
            return self._send(method, path, headers={**extra, **self._bearer()}, **kwargs)

    def _bearer(self) -> dict[str, str]:
        assert self.tokens is not None
        return {"Authorization": f"Bearer {self.tokens.access_token}"}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise NetworkUnavailable(f"{method} {path}: {exc.__class__.__name__}") from None
        if response.status_code < 400:
            return response
        raise _error_for(method, path, response)

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:  # orjson: a review queue of 1,000 conflicts is megabytes of JSON
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise ClinicError(f"server sent no JSON ({response.status_code})") from None


def _error_for(method: str, path: str, response: httpx.Response) -> ClinicError:
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = f"{method} {path} -> {response.status_code}: {diagnostics_of(body)}"
    status = response.status_code
    if status == 401:
        return AuthenticationFailed(detail)
    if status == 403:
        return Forbidden(detail)
    if status in (400, 422):
        return ValidationFailed(detail)
    if status in (404, 410):
        return NotFound(detail)
    if status in (409, 412):
        return VersionConflict(detail)
    if status >= 500 or status == 429:
        return NetworkUnavailable(
            detail, user_message="The server is busy or unavailable. Try again in a moment."
        )
    return ClinicError(detail)
