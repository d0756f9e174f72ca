"""Access guard and audit sink for the server's own tools (import, seed-demo, the CLI).

`SystemGuard` lets only system contexts (`RequestContext.for_system`) act, so
it can never widen a user's access by mistake. `SystemAudit` keeps no
per-resource record: a bulk import or a demo seed is one operator action, logged
by the command itself. Requests from users use the real guard and audit of
the identity services instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from shared_models.errors import Forbidden
from sync_server.services.context import RequestContext


class SystemGuard:
    """Allows everything to system contexts, nothing to anyone else."""

    def authorize(
        self,
        session: Session,
        ctx: RequestContext,
        action: str,
        resource_type: str,
        patient_id: str | None,
    ) -> None:
        if not ctx.system:
            raise Forbidden(f"{action} on {resource_type} needs a signed-in user")

    def visible_location_ids(self, ctx: RequestContext) -> frozenset[str] | None:
        return None if ctx.system else frozenset()


class SystemAudit:
    """Audit sink for system contexts: records nothing per resource (see module doc)."""

    def record(
        self,
        session: Session,
        ctx: RequestContext,
        *,
        action: str,
        outcome: str,
        resource_type: str | None = None,
        resource_id: str | None = None,
        patient_ids: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        return None
