"""What happens to one pushed change: the merge rules plus the per-type policy.

`decide_change` is the whole decision, pure: given the client's change, the
server's current version and the base version the client edited, it says
`applied`, `merged`, `conflict` or `rejected`, and what (if anything) to write.
Both sides use it: the server to answer a push, the desktop to preview one.

Per-type policy (DESIGN.md):

- a signed note (DocumentReference `docStatus=final`, Composition
  `status=final`) is immutable: changes are rejected, the clinician adds an
  addendum instead;
- observations and audit events are append-only: an update or delete of an
  existing one is rejected;
- an allergy or a problem is never dropped by a merge: a merge in which one side
  retires it (inactive, resolved, refuted, entered in error) while the other
  edited it goes to review;
- delete against update is a conflict, never a silent loss;
- a slot is never double-booked: the server checks the bookings it holds
  (`SLOT_DOUBLE_BOOKING`); the later booking is rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from shared_models.merge import canonical, merge_resources, strip_server_meta
from shared_models.risk import ReviewRoute, classify_conflict

Status = Literal["applied", "merged", "conflict", "rejected"]

SIGNED_NOTE: Final = "signed-note-immutable"
APPEND_ONLY: Final = "append-only"
NEVER_DROPPED: Final = "allergy-problem-never-dropped"
DELETE_VS_UPDATE: Final = "delete-vs-update"
CONCURRENT_EDIT: Final = "concurrent-edit"
SLOT_DOUBLE_BOOKING: Final = "slot-double-booking"

APPEND_ONLY_TYPES: Final = frozenset({"Observation", "AuditEvent"})
NEVER_DROPPED_TYPES: Final = frozenset({"AllergyIntolerance", "Condition"})
_RETIRED_CODES: Final = frozenset({"inactive", "resolved", "refuted", "entered-in-error"})
#: Appointment statuses that do not hold their slots.
_NOT_BOOKING: Final = frozenset({"cancelled", "noshow", "entered-in-error"})

REASONS: Final[dict[str, str]] = {
    SIGNED_NOTE: "This note is signed and cannot be changed. Add an addendum instead.",
    APPEND_ONLY: "Recorded observations and audit events cannot be changed or removed. "
    "Record a new entry instead.",
    NEVER_DROPPED: "An allergy or problem would be retired by an automatic merge. "
    "Please review both versions.",
    DELETE_VS_UPDATE: "The record was deleted on one side and changed on the other. "
    "Please review both versions.",
    CONCURRENT_EDIT: "The same information was changed here and on the server. "
    "Please review both versions.",
    SLOT_DOUBLE_BOOKING: "This appointment slot is already booked. Choose another slot.",
}


@dataclass(frozen=True)
class ChangeDecision:
    """The answer to one pushed change.

    `write` says whether a new version must be written: `resource` (for an
    upsert) or a tombstone (`delete`). A no-op (the client sent what the server
    already has) is `applied` without a write.
    """

    status: Status
    write: bool = False
    delete: bool = False
    resource: dict[str, Any] | None = None
    rule: str | None = None
    paths: tuple[str, ...] = ()
    route: ReviewRoute | None = None

    @property
    def reason(self) -> str | None:
        return REASONS.get(self.rule) if self.rule else None


def is_signed_note(resource: dict[str, Any] | None) -> bool:
    if resource is None:
        return False
    kind = resource.get("resourceType")
    if kind == "DocumentReference":
        return resource.get("docStatus") in ("final", "amended")
    if kind == "Composition":
        return resource.get("status") in ("final", "amended")
    return False


def is_retired(resource: dict[str, Any]) -> bool:
    """An allergy or problem that no longer counts as active for the patient."""
    for element in ("clinicalStatus", "verificationStatus"):
        concept = resource.get(element)
        codings = concept.get("coding", []) if isinstance(concept, dict) else []
        if any(isinstance(c, dict) and c.get("code") in _RETIRED_CODES for c in codings):
            return True
    return False


def booked_slot_ids(resource: dict[str, Any]) -> list[str]:
    """Ids of the Slots an Appointment holds (none when it is cancelled or void)."""
    if resource.get("resourceType") != "Appointment":
        return []
    if resource.get("status") in _NOT_BOOKING:
        return []
    out = []
    for slot in resource.get("slot") or []:
        reference = slot.get("reference") if isinstance(slot, dict) else None
        if isinstance(reference, str) and reference.startswith("Slot/"):
            out.append(reference.removeprefix("Slot/"))
    return sorted(set(out))


def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return canonical(strip_server_meta(a)) == canonical(strip_server_meta(b))


def decide_change(
    resource_type: str,
    *,
    client: dict[str, Any] | None,
    base_version: int | None,
    current_version: int | None,
    current: dict[str, Any] | None,
    base: dict[str, Any] | None,
) -> ChangeDecision:
    """Decide one change.

    `client` is None for a delete. `current_version` is None when the server
    never had the resource; `current` is None when its current version is a
    tombstone. `base` is the content of `base_version` (None when unknown or a
    tombstone).
    """
    deleting = client is None
    if current_version is None:
        return ChangeDecision("applied", write=not deleting, resource=client)
    if current is None:  # deleted on the server
        if deleting:
            return ChangeDecision("applied")
        if base_version == current_version:  # re-created on top of the tombstone
            return ChangeDecision("applied", write=True, resource=client)
        return _conflict(resource_type, DELETE_VS_UPDATE, (resource_type,))
    if client is not None and same_content(client, current):
        return ChangeDecision("applied")
    if is_signed_note(current):
        return _rejected(SIGNED_NOTE)
    if resource_type in APPEND_ONLY_TYPES:
        return _rejected(APPEND_ONLY)
    if base_version == current_version:
        return ChangeDecision("applied", write=True, delete=deleting, resource=client)
    if client is None:
        return _conflict(resource_type, DELETE_VS_UPDATE, (resource_type,))
    return _merge(resource_type, base or {}, current, client)


def _merge(
    resource_type: str, base: dict[str, Any], current: dict[str, Any], client: dict[str, Any]
) -> ChangeDecision:
    result = merge_resources(base, current, client)
    if result.conflicts:
        route = classify_conflict(resource_type, result.conflicts)
        if route is not ReviewRoute.AUTO_MERGE:
            return _conflict(resource_type, CONCURRENT_EDIT, result.conflicts)
        result = merge_resources(base, current, client, on_conflict="client")
    merged = result.merged
    if resource_type in NEVER_DROPPED_TYPES and (
        is_retired(merged) != is_retired(current) or is_retired(merged) != is_retired(client)
    ):
        paths = (f"{resource_type}.clinicalStatus", f"{resource_type}.verificationStatus")
        return _conflict(resource_type, NEVER_DROPPED, paths)
    return ChangeDecision("merged", write=True, resource=merged, paths=result.conflicts)


def _conflict(resource_type: str, rule: str, paths: tuple[str, ...]) -> ChangeDecision:
    route = classify_conflict(resource_type, paths)
    if route is ReviewRoute.AUTO_MERGE:  # a delete is never merged automatically
        route = ReviewRoute.REGISTRATION
    return ChangeDecision("conflict", rule=rule, paths=paths, route=route)


def _rejected(rule: str) -> ChangeDecision:
    return ChangeDecision("rejected", rule=rule)
