"""Who is asking: the request context every service call carries.

Built once per request by the API layer (from the access token) or by the CLI
(the system context for import and seeding). The FHIR repository asks the
`AccessGuard` whether the context may act and hands every outcome to the
`AuditSink`, so access checks and audit happen at one chokepoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class RequestContext:
    username: str
    user_id: str | None = None
    #: FHIR reference of the user's Practitioner (`Practitioner/ID`), when linked.
    practitioner: str | None = None
    roles: frozenset[str] = frozenset()
    #: FHIR Location ids the user works at.
    location_ids: frozenset[str] = frozenset()
    #: SMART scopes granted to a third-party app; None for first-party sessions.
    scopes: frozenset[str] | None = None
    #: Patient the SMART launch is bound to (patient/ scopes), if any.
    launch_patient: str | None = None
    #: SMART app (registered client id) acting for the user, if any.
    client_id: str | None = None
    workstation_id: str | None = None
    source_ip: str | None = None
    #: Patient ids opened with an unexpired break-the-glass grant, and its reason.
    break_glass: dict[str, str] = field(default_factory=dict)
    #: True for the server's own tools (import, seed-demo, migrations): no user.
    system: bool = False

    @classmethod
    def for_system(cls, purpose: str) -> RequestContext:
        return cls(username=f"system:{purpose}", system=True)


class AccessGuard(Protocol):
    """Decides what a context may do. One implementation; the permission table lives there."""

    def authorize(
        self,
        session: Session,
        ctx: RequestContext,
        action: str,
        resource_type: str,
        patient_id: str | None,
    ) -> None:
        """Raise `shared_models.errors.Forbidden` when `ctx` may not do `action`.

        `action` is one of `read`, `search`, `create`, `update`, `delete`, `sign`.
        `patient_id` is the patient whose compartment the resource is in (None
        for non-patient resources such as Practitioner or Location).
        """

    def visible_location_ids(self, ctx: RequestContext) -> frozenset[str] | None:
        """Locations whose patients `ctx` may see; None means no location restriction."""


class AuditSink(Protocol):
    """Records an AuditEvent in the caller's transaction: no unaudited access."""

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
    ) -> None: ...
