"""Sign-in accounts for the demo clinic (`ehr-server demo` only, never in production).

Three users on the seeded sites: a physician at every site, a nurse at one
satellite, front desk at the main clinic, all with one demo password. Their
TOTP secrets and the password go to a file in the data directory (mode 0600),
never to the terminal; the command prints only where the file is.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from sync_server.db.identity_models import UserRow
from sync_server.services import users
from sync_server.services.identity import IdentityRuntime

DEMO_PASSWORD = "Riverside-Demo-2026!"  # noqa: S105  (demo accounts only, written to the data dir)
ACCOUNTS_FILE = "demo-accounts.txt"


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
    lines = [f"Demo accounts (password for all: {DEMO_PASSWORD})", ""]
    for username, roles, sites in plan:
        _, enrolment = users.create_user(
            session, runtime.keys, runtime.security, username=username,
            password=DEMO_PASSWORD, roles=roles, location_ids=sites,
        )  # fmt: skip
        lines += [f"{username} ({', '.join(roles)})", f"  TOTP secret: {enrolment.secret}",
                  f"  {enrolment.otpauth_uri}", ""]  # fmt: skip
    path = data_dir / ACCOUNTS_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines))
    return path
