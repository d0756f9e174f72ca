"""Sign-in accounts for the demo clinic (`ehr-server demo` only, never in production).

Three users on the seeded sites: a physician at every site, a nurse at one
satellite, front desk at the main clinic, all with one demo password. Their
TOTP secrets and the password go to a JSON file in the data directory (mode
0600), never to the terminal log. `ehr-server demo-otp` and the desktop's demo
panel (`ehr-desktop --demo-accounts FILE`) read it:

    {"demo": true, "password": "...",
     "accounts": [{"username": "...", "roles": ["..."], "totp_secret": "BASE32",
                   "otpauth_uri": "otpauth://..."}]}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyotp
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from sync_server.db.identity_models import UserRow
from sync_server.services import users
from sync_server.services.identity import IdentityRuntime

DEMO_PASSWORD = "Riverside-Demo-2026!"  # noqa: S105  (demo accounts only, written to the data dir)
ACCOUNTS_FILE = "demo-accounts.json"


def create_demo_accounts(session: Session, runtime: IdentityRuntime, data_dir: Path) -> Path | None:
    """Create the demo users when there are none yet; returns the accounts file (or None)."""
    if session.scalar(select(UserRow.id).limit(1)) is not None:
        return None
    locations = [
        row[0]
        for row in session.execute(
            text(
                "SELECT id FROM resources WHERE resource_type = 'Location' AND NOT deleted"
                " ORDER BY resource->>'name' = 'Riverside Main Clinic' DESC, resource->>'name'"
            )
        )
    ]
    if not locations:
        return None
    plan = [
        ("demo.physician", ["physician"], locations),
        ("demo.nurse", ["nurse"], locations[1:2] or locations[:1]),
        ("demo.frontdesk", ["front_desk"], locations[:1]),
    ]
    accounts: list[dict[str, Any]] = []
    for username, roles, sites in plan:
        _, enrolment = users.create_user(
            session, runtime.keys, runtime.security, username=username,
            password=DEMO_PASSWORD, roles=roles, location_ids=sites,
        )  # fmt: skip
        accounts.append({"username": username, "roles": roles, "totp_secret": enrolment.secret,
                         "otpauth_uri": enrolment.otpauth_uri})  # fmt: skip
    path = data_dir / ACCOUNTS_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"demo": True, "password": DEMO_PASSWORD, "accounts": accounts}, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    return path


class NotADemoDataDir(Exception):
    """The data directory holds no demo accounts file: it is not a demo clinic."""


def read_demo_accounts(data_dir: Path) -> dict[str, Any]:
    """The demo accounts file of `data_dir`, or NotADemoDataDir."""
    path = data_dir / ACCOUNTS_FILE
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NotADemoDataDir(f"{data_dir} holds no readable {ACCOUNTS_FILE}") from exc
    if not isinstance(content, dict) or content.get("demo") is not True:
        raise NotADemoDataDir(f"{path} is not a demo accounts file")
    return content


def current_code(data_dir: Path, username: str) -> str:
    """The demo user's TOTP code for now (KeyError for a user not in the demo file)."""
    for account in read_demo_accounts(data_dir)["accounts"]:
        if account["username"] == username:
            return pyotp.TOTP(account["totp_secret"]).now()
    raise KeyError(username)
