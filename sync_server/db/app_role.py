"""Run the server's connections as the restricted database role `ehr_app`.

Migration `0002_identity_audit` creates the role: it may not UPDATE, DELETE or
TRUNCATE `audit_events`. Every pooled connection switches to it when it is
opened, once the role exists and the login user may use it. Migrations `RESET
ROLE` first (they need the owner's rights).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event

APP_ROLE = "ehr_app"


def _set_app_role(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cur:
        cur.execute(
            "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = %s)"
            " AND pg_has_role(session_user, %s, 'MEMBER')",
            (APP_ROLE, APP_ROLE),
        )
        row = cur.fetchone()
        if row and row[0]:
            cur.execute(f"SET ROLE {APP_ROLE}")
    dbapi_connection.commit()


def use_app_role(engine: Engine) -> None:
    """Make every new connection of `engine` run as `ehr_app` (when migrated)."""
    event.listen(engine, "connect", _set_app_role)
