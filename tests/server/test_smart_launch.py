"""SMART on FHIR end to end over real HTTP: discovery, authorize + consent, code + PKCE, scopes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from identity_support import (
    TwoSites,
    bearer,
    login,
    make_user,
)

from sync_server.services.smart import pkce_challenge

REDIRECT = "http://127.0.0.1:9/callback"


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def doctor(server: Any, sites: TwoSites) -> Any:
    return make_user(server, "dr.smart", ["physician"], [sites.location_mine], practitioner="pr-9")


def _register(client: httpx.Client, server: Any, scopes: str) -> str:
    admin = make_user(server, f"admin.smart.{secrets.token_hex(3)}", ["admin"])
    token = login(client, admin)["access_token"]
    response = client.post(
        "/admin/smart-clients",
        headers=bearer(token),
        json={"name": "Growth chart app", "redirect_uris": [REDIRECT], "scopes": scopes},
    )
    assert response.status_code == 201, response.text
    client_id: str = response.json()["client_id"]
    return client_id


def _authorize(
    client: httpx.Client, client_id: str, user: Any, scope: str, patient: str | None
) -> tuple[str, str]:
    """Run the browser part: consent page, sign in, approve. Returns (code, verifier)."""
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "xyz-state",
        "aud": f"{client.base_url}fhir/R4",
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    page = client.get("/auth/authorize", params=params)
    assert page.status_code == 200 and "Growth chart app" in page.text
    form = params | {
        "username": user.username,
        "password": user.password,
        "otp": user.next_code(),
        "decision": "approve",
        "patient": patient or "",
    }
    answer = client.post("/auth/authorize", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    location = urlparse(answer.headers["location"])
    query = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    assert query["state"] == ["xyz-state"]
    return query["code"][0], verifier


def _exchange(client: httpx.Client, client_id: str, code: str, verifier: str) -> httpx.Response:
    return client.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )


def test_discovery_documents(client: httpx.Client) -> None:
    config = client.get("/fhir/R4/.well-known/smart-configuration").json()
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["token_endpoint"].endswith("/auth/token")
    assert "permission-v2" in config["capabilities"]
    security = client.get("/fhir/R4/metadata").json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    oauth = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert oauth["token"] == config["token_endpoint"]


def test_patient_app_sees_only_its_patient_and_only_reads(
    client: httpx.Client, server: Any, sites: TwoSites, doctor: Any, shared_data: Path
) -> None:
    scope = "openid fhirUser launch/patient offline_access patient/*.rs"
    client_id = _register(client, server, scope)
    code, verifier = _authorize(client, client_id, doctor, scope, sites.mine[0])
    tokens = _exchange(client, client_id, code, verifier)
    assert tokens.status_code == 200, tokens.text
    answer = tokens.json()
    assert answer["patient"] == sites.mine[0]
    assert set(answer["scope"].split()) == set(scope.split())
    assert answer["refresh_token"] and answer["id_token"]
    assert (
        httpx.get(f"{server.fhir_url}/Patient", headers=bearer(answer["id_token"])).status_code
        == 401
    )
    fhir = httpx.Client(base_url=server.fhir_url, headers=bearer(answer["access_token"]))
    assert fhir.get(f"/Patient/{sites.mine[0]}").status_code == 200
    # The doctor may see the second patient at the site; the app bound to the first may not.
    assert fhir.get(f"/Patient/{sites.mine[1]}").status_code == 403
    found = fhir.get("/Encounter").json().get("entry", [])
    assert found and {e["resource"]["subject"]["reference"] for e in found} == {
        f"Patient/{sites.mine[0]}"
    }
    # Narrower than the physician role: read-only scopes refuse writes.
    observation = json.loads(
        (shared_data / "fhir-examples/r4-examples/Observation-example.json").read_text()
    )
    observation.pop("id")
    observation["subject"] = {"reference": f"Patient/{sites.mine[0]}"}
    assert fhir.post("/Observation", json=observation).status_code == 403
    # Replaying the code fails and revokes what the first exchange issued.
    replay = _exchange(client, client_id, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert fhir.get(f"/Patient/{sites.mine[0]}").status_code == 401
    refreshed = client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": answer["refresh_token"]},
    )
    assert refreshed.status_code == 400


def test_wrong_pkce_verifier_and_unregistered_redirect_are_refused(
    client: httpx.Client, server: Any, doctor: Any
) -> None:
    scope = "user/Observation.rs"
    client_id = _register(client, server, scope)
    code, _ = _authorize(client, client_id, doctor, scope, None)
    assert _exchange(client, client_id, code, secrets.token_urlsafe(48)).status_code == 400
    bad = client.get(
        "/auth/authorize",
        params={"response_type": "code", "client_id": client_id, "redirect_uri": "https://evil.example/cb",
                "scope": scope, "code_challenge": "x" * 43, "code_challenge_method": "S256"},
    )  # fmt: skip
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    plain = client.get(
        "/auth/authorize",
        params={"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
                "scope": scope, "code_challenge": "x" * 43, "code_challenge_method": "plain"},
    )  # fmt: skip
    assert plain.status_code == 400


def test_user_scope_narrower_than_role(
    client: httpx.Client, server: Any, sites: TwoSites, doctor: Any
) -> None:
    scope = "user/Encounter.rs"
    client_id = _register(client, server, scope)
    code, verifier = _authorize(client, client_id, doctor, scope, None)
    answer = _exchange(client, client_id, code, verifier).json()
    assert "refresh_token" not in answer  # no offline_access asked
    fhir = httpx.Client(base_url=server.fhir_url, headers=bearer(answer["access_token"]))
    encounters = fhir.get("/Encounter").json().get("entry", [])
    subjects = {e["resource"]["subject"]["reference"] for e in encounters}
    assert subjects == {f"Patient/{p}" for p in sites.mine}  # location scoping still applies
    assert fhir.get(f"/Patient/{sites.mine[0]}").status_code == 403  # no Patient scope
    assert fhir.get("/Condition").status_code == 403
