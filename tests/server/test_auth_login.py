"""Sign-in over real HTTP: MFA, replay, lockout, expiry, refresh rotation and reuse, logout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyotp
import pytest
from identity_support import (
    audit_rows,
    bearer,
    identity_of,
    login,
    make_user,
)
from sqlalchemy import text


@pytest.fixture(scope="module")
def client(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def test_login_returns_tokens_user_and_policy(server: Any, client: httpx.Client) -> None:
    user = make_user(server, "nurse.login", ["nurse"], ["loc-a"], practitioner="pr-1")
    answer = login(client, user)
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 600
    assert answer["user"] == {
        "username": "nurse.login",
        "roles": ["nurse"],
        "locations": ["loc-a"],
        "practitioner": "Practitioner/pr-1",
    }
    assert answer["policy"] == {"offline_signin_days": 7, "idle_lock_minutes": 10, "wipe": False}
    policy = client.get(
        "/auth/policy",
        params={"workstation_id": "ws-test-1"},
        headers=bearer(answer["access_token"]),
    )
    assert policy.json() == answer["policy"]
    assert audit_rows(server, username="nurse.login", action="login")[-1]["outcome"] == "success"


def test_admin_enrols_user_whose_qr_secret_signs_in(server: Any, client: httpx.Client) -> None:
    admin = make_user(server, "admin.enrol", ["admin"])
    token = login(client, admin)["access_token"]
    created = client.post(
        "/admin/users",
        headers=bearer(token),
        json={"username": "dr.new", "password": "A-long-enough-pass-42", "roles": ["physician"],
              "locations": ["loc-a"]},
    )  # fmt: skip
    assert created.status_code == 201, created.text
    mfa = created.json()["mfa"]
    assert mfa["otpauth_uri"].startswith("otpauth://totp/")
    assert mfa["qr_svg"].startswith("<?xml") and "<svg" in mfa["qr_svg"]
    secret = pyotp.parse_uri(mfa["otpauth_uri"]).secret
    ok = client.post(
        "/auth/login",
        json={"username": "dr.new", "password": "A-long-enough-pass-42",
              "otp": pyotp.TOTP(secret).now(), "workstation_id": "ws-x"},
    )  # fmt: skip
    assert ok.status_code == 200
    no_code = client.post(
        "/auth/login", json={"username": "dr.new", "password": "A-long-enough-pass-42"}
    )
    assert no_code.status_code == 401


def test_weak_password_is_refused_with_outcome(server: Any, client: httpx.Client) -> None:
    admin = make_user(server, "admin.weak", ["admin"])
    token = login(client, admin)["access_token"]
    response = client.post(
        "/admin/users",
        headers=bearer(token),
        json={"username": "weak", "password": "short", "roles": ["nurse"]},
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "short" not in response.text


def test_failures_look_the_same_for_unknown_user_bad_password_bad_code(
    server: Any, client: httpx.Client
) -> None:
    user = make_user(server, "fd.same", ["front_desk"], ["loc-a"])
    attempts = [
        {"username": "nobody.here", "password": user.password, "otp": "123456"},
        {"username": user.username, "password": "wrong-password-1", "otp": user.next_code()},
        {"username": user.username, "password": user.password, "otp": "000000"},
    ]
    bodies = []
    for attempt in attempts:
        response = client.post("/auth/login", json=attempt)
        assert response.status_code == 401
        bodies.append(response.json())
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["resourceType"] == "OperationOutcome"
    failures = audit_rows(server, action="login", outcome="failure")
    assert {"nobody.here", "fd.same"} <= {row["username"] for row in failures}


def test_replayed_totp_code_is_refused(server: Any, client: httpx.Client) -> None:
    user = make_user(server, "dr.replay", ["physician"], ["loc-a"])
    code = user.next_code()
    body = {"username": user.username, "password": user.password, "otp": code}
    assert client.post("/auth/login", json=body).status_code == 200
    assert client.post("/auth/login", json=body).status_code == 401


def test_lockout_after_five_failures_then_admin_unlock(server: Any, client: httpx.Client) -> None:
    user = make_user(server, "nurse.locked", ["nurse"], ["loc-a"])
    for _ in range(5):
        bad = {"username": user.username, "password": "not-the-password", "otp": "111111"}
        assert client.post("/auth/login", json=bad).status_code == 401
    good = {"username": user.username, "password": user.password, "otp": user.next_code()}
    locked = client.post("/auth/login", json=good)
    assert locked.status_code == 403
    assert locked.json()["resourceType"] == "OperationOutcome"
    assert audit_rows(server, username=user.username, action="lockout")

    admin = make_user(server, "admin.unlock", ["admin"])
    token = login(client, admin)["access_token"]
    shown = client.get(f"/admin/users/{user.username}", headers=bearer(token)).json()
    assert shown["locked_until"] is not None and shown["failed_attempts"] == 5
    assert (
        client.post(f"/admin/users/{user.username}/unlock", headers=bearer(token)).status_code
        == 200
    )
    assert login(client, user)["access_token"]


def test_missing_forged_and_expired_tokens_are_refused(server: Any, client: httpx.Client) -> None:
    user = make_user(server, "dr.expiry", ["physician"], ["loc-a"])
    assert client.get("/fhir/R4/Patient").status_code == 401
    token = login(client, user)["access_token"]
    assert client.get("/fhir/R4/Patient", headers=bearer(token)).status_code == 200
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert client.get("/fhir/R4/Patient", headers=bearer(forged)).status_code == 401

    rt = identity_of(server)
    with server.engine.connect() as conn:
        user_id = conn.execute(
            text("SELECT id FROM users WHERE username = 'dr.expiry'")
        ).scalar_one()
    from sqlalchemy.orm import Session

    with Session(server.engine) as session:
        now = int(time.time())
        expired = rt.signing.sign(
            session,
            {
                "iss": "ehr-server",
                "sub": user_id,
                "use": "access",
                "iat": now - 700,
                "exp": now - 100,
            },
        )
    response = client.get("/fhir/R4/Patient", headers=bearer(expired))
    assert response.status_code == 401
    assert response.json()["issue"][0]["code"] == "login"


def test_refresh_rotates_and_reuse_revokes_the_family(server: Any, client: httpx.Client) -> None:
    user = make_user(server, "dr.refresh", ["physician"], ["loc-a"])
    first = login(client, user)
    second = client.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert second.status_code == 200
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert (
        client.get("/fhir/R4/Patient", headers=bearer(rotated["access_token"])).status_code == 200
    )

    reuse = client.post(
        "/auth/token", data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    )
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # The whole family is gone: the newest refresh token and its access token too.
    again = client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": rotated["refresh_token"]},
    )
    assert again.status_code == 400
    assert (
        client.get("/fhir/R4/Patient", headers=bearer(rotated["access_token"])).status_code == 401
    )
    assert audit_rows(server, action="token-reuse")


def test_logout_revokes_access_and_refresh_tokens(server: Any, client: httpx.Client) -> None:
    user = make_user(server, "fd.logout", ["front_desk"], ["loc-a"])
    answer = login(client, user)
    headers = bearer(answer["access_token"])
    assert client.get("/fhir/R4/Patient", headers=headers).status_code == 200
    assert client.post("/auth/logout", headers=headers).status_code == 204
    assert client.get("/fhir/R4/Patient", headers=headers).status_code == 401
    refreshed = client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "refresh_token": answer["refresh_token"]},
    )
    assert refreshed.status_code == 400


def test_disabled_user_and_revoked_workstation_are_told_to_wipe(
    server: Any, client: httpx.Client
) -> None:
    nurse = make_user(server, "nurse.wipe", ["nurse"], ["loc-a"])
    admin = make_user(server, "admin.wipe", ["admin"])
    admin_headers = bearer(login(client, admin)["access_token"])
    nurse_token = login(client, nurse, workstation="ws-stolen")["access_token"]

    revoke = client.post("/admin/workstations/ws-stolen/revoke", headers=admin_headers)
    assert revoke.status_code == 204
    policy = client.get("/auth/policy", params={"workstation_id": "ws-stolen"})
    assert policy.json()["wipe"] is True
    assert client.post(
        "/auth/login",
        json={"username": nurse.username, "password": nurse.password, "otp": nurse.next_code(),
              "workstation_id": "ws-stolen"},
    ).status_code == 403  # fmt: skip

    change = client.patch(
        f"/admin/users/{nurse.username}", headers=admin_headers, json={"disabled": True}
    )
    assert change.status_code == 200 and change.json()["disabled"] is True
    policy = client.get(
        "/auth/policy", params={"workstation_id": "ws-other"}, headers=bearer(nurse_token)
    )
    assert policy.json()["wipe"] is True
    assert client.get("/fhir/R4/Patient", headers=bearer(nurse_token)).status_code == 401


def test_signing_key_rotation_keeps_old_tokens_until_retired(
    server: Any, client: httpx.Client
) -> None:
    admin = make_user(server, "admin.keys", ["admin"])
    user = make_user(server, "dr.keys", ["physician"], ["loc-a"])
    old_token = login(client, user)["access_token"]
    admin_headers = bearer(login(client, admin)["access_token"])
    from joserfc.jws import extract_compact

    old_kid = extract_compact(old_token.encode()).headers()["kid"]
    new_kid = client.post("/admin/signing-keys/rotate", headers=admin_headers).json()["kid"]
    new_token = login(client, user)["access_token"]
    assert extract_compact(new_token.encode()).headers()["kid"] == new_kid != old_kid
    assert client.get("/fhir/R4/Patient", headers=bearer(old_token)).status_code == 200
    identity_of(server).signing._loaded_at = 0.0  # as if 30 s had passed
    admin_headers = bearer(login(client, admin)["access_token"])
    retire = client.post(f"/admin/signing-keys/{old_kid}/retire", headers=admin_headers)
    assert retire.status_code == 204
    assert client.get("/fhir/R4/Patient", headers=bearer(old_token)).status_code == 401
    assert client.get("/fhir/R4/Patient", headers=bearer(new_token)).status_code == 200
