"""An `AccessGuard` that asks the real one once per (action, type, patient) in one request.

A sync push of 500 changes or a review queue of 1,000 conflicts usually
touches a few patients: asking the guard (a query each) for every resource
would cost more than the work itself. Only grants are remembered; a denial is
asked again, so it is refused (and audited by the caller) every time.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sync_server.services.context import AccessGuard, RequestContext


class GrantMemo:
    """Implements `sync_server.services.context.AccessGuard` for one request."""

    def __init__(self, guard: AccessGuard) -> None:
        self._guard = guard
        self._granted: set[tuple[str, str, str | None]] = set()

    def authorize(
        self,
        session: Session,
        ctx: RequestContext,
        action: str,
        resource_type: str,
        patient_id: str | None,
    ) -> None:
        key = (action, resource_type, patient_id)
        if key not in self._granted:
            self._guard.authorize(session, ctx, action, resource_type, patient_id)
            self._granted.add(key)

    def visible_location_ids(self, ctx: RequestContext) -> frozenset[str] | None:
        return self._guard.visible_location_ids(ctx)
