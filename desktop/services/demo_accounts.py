"""The demo clinic's sign-in accounts, for the sign-in screen's demo panel (demo only).

`ehr-server demo` writes them to `DATA_DIR/demo-accounts.json` (mode 0600) and
starts the desktop with `--demo-accounts FILE`; without that flag nothing here
is used. The format belongs to `sync_server.services.demo_accounts`:

    {"demo": true, "password": "...",
     "accounts": [{"username": "...", "roles": ["..."], "totp_secret": "BASE32", ...}]}
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pyotp

from shared_models.errors import ClinicError

STEP_SECONDS = 30  # the server's TOTP step (pyotp's default)
ROLE_LABELS = {"physician": "Physician", "nurse": "Nurse", "front_desk": "Front desk"}


@dataclass(frozen=True)
class DemoAccount:
    username: str
    roles: tuple[str, ...]
    password: str
    totp_secret: str

    @property
    def role_label(self) -> str:
        return ", ".join(ROLE_LABELS.get(role, role.replace("_", " ")) for role in self.roles)

    def current_code(self, now: float | None = None) -> str:
        totp = pyotp.TOTP(self.totp_secret, interval=STEP_SECONDS)
        return totp.at(time.time() if now is None else now)


def seconds_left(now: float | None = None) -> int:
    """Seconds until every demo code changes (TOTP steps are 30 s, aligned to the epoch)."""
    return STEP_SECONDS - int(time.time() if now is None else now) % STEP_SECONDS


def load_demo_accounts(path: Path) -> list[DemoAccount]:
    """The accounts of a demo accounts file; ClinicError when it is missing or not one."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(content, dict) or content.get("demo") is not True:
            raise ValueError("not a demo accounts file")
        return [
            DemoAccount(
                username=str(account["username"]),
                roles=tuple(str(role) for role in account["roles"]),
                password=str(content["password"]),
                totp_secret=str(account["totp_secret"]),
            )
            for account in content["accounts"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClinicError(
            f"demo accounts unreadable: {type(exc).__name__}",
            user_message=f"{path.name} is not a demo accounts file written by `ehr-server demo`.",
        ) from exc
