"""The real `AccessGuard`: role permissions, SMART scopes, location scoping, break-the-glass.

A call is allowed when all of these hold:

1. one of the user's roles allows the action on the type (`permissions.PERMISSION_TABLE`);
2. for a SMART app, a granted scope covers it too (scopes only narrow a role);
3. for a resource in a patient's compartment, the patient is cared for at one of
   the user's locations (`patient_locations`), or the user holds an unexpired
   break-the-glass grant for them, or - for a create only - the patient has no
   care site yet (a newly registered patient, whose first Encounter or
   Appointment then ties them to a location). A patient-bound SMART app may only
   touch its launch patient.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from shared_models.errors import Forbidden
from sync_server.db.engine import driver_connection
from sync_server.services import permissions, smart
from sync_server.services.context import RequestContext

_LINKED_AT = (
    "SELECT EXISTS (SELECT 1 FROM patient_locations WHERE patient_id = %(patient)s"
    " AND location_id = ANY(%(locations)s::text[])),"
    " EXISTS (SELECT 1 FROM patient_locations WHERE patient_id = %(patient)s)"
)


def is_patient_bound(ctx: RequestContext) -> bool:
    """A SMART app restricted to its launch patient (only `patient/` scopes)."""
    return ctx.scopes is not None and smart.only_patient_scopes(ctx.scopes)


class ScopedAccessGuard:
    """Implements `sync_server.services.context.AccessGuard`."""

    def authorize(
        self,
        session: Session,
        ctx: RequestContext,
        action: str,
        resource_type: str,
        patient_id: str | None,
    ) -> None:
        if ctx.system:
            return
        if not permissions.roles_allow(ctx.roles, action, resource_type):
            raise Forbidden(f"role may not {action} {resource_type}")
        if ctx.scopes is not None:
            self._check_scopes(ctx, action, resource_type, patient_id)
        if patient_id is not None:
            self._check_patient(session, ctx, action, patient_id)

    @staticmethod
    def _check_scopes(
        ctx: RequestContext, action: str, resource_type: str, patient_id: str | None
    ) -> None:
        assert ctx.scopes is not None
        bound = ctx.launch_patient is not None and (
            patient_id == ctx.launch_patient or (patient_id is None and action == "search")
        )
        if not smart.scope_allows(ctx.scopes, action, resource_type, patient_bound=bound):
            raise Forbidden(f"granted scopes do not cover {action} {resource_type}")
        if is_patient_bound(ctx) and patient_id is not None and patient_id != ctx.launch_patient:
            raise Forbidden("app is bound to another patient")

    @staticmethod
    def _check_patient(session: Session, ctx: RequestContext, action: str, patient_id: str) -> None:
        if patient_id in ctx.break_glass:
            return
        row = (
            driver_connection(session)
            .execute(_LINKED_AT, {"patient": patient_id, "locations": sorted(ctx.location_ids)})
            .fetchone()
        )
        assert row is not None  # EXISTS always yields one row
        at_my_location, has_site = row
        if at_my_location or (action == "create" and not has_site):
            return
        raise Forbidden("patient is not cared for at the user's locations")

    def visible_location_ids(self, ctx: RequestContext) -> frozenset[str] | None:
        if ctx.system:
            return None
        if is_patient_bound(ctx):
            return frozenset()  # only the launch patient, carried in ctx.break_glass
        return ctx.location_ids
