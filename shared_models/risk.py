"""Conflicts routed by clinical risk (DESIGN.md: the product's edge over its peers).

A medication or allergy conflict goes to a prescriber; a clinical conflict to a
clinician; identity and scheduling conflicts to registration; pure demographic
conflicts (a phone number, an address) are merged automatically, the client's
edit winning, because the server's value stays in the version history.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final


class ReviewRoute(StrEnum):
    PRESCRIBER = "prescriber"
    CLINICIAN = "clinician"
    REGISTRATION = "registration"
    AUTO_MERGE = "auto_merge"


#: Roles that may resolve a conflict on each route.
RESOLVER_ROLES: Final[dict[ReviewRoute, frozenset[str]]] = {
    ReviewRoute.PRESCRIBER: frozenset({"physician"}),
    ReviewRoute.CLINICIAN: frozenset({"physician", "nurse"}),
    ReviewRoute.REGISTRATION: frozenset({"front_desk", "physician", "nurse"}),
    ReviewRoute.AUTO_MERGE: frozenset({"front_desk", "physician", "nurse"}),
}

_PRESCRIBER_TYPES: Final = frozenset(
    {
        "MedicationRequest",
        "MedicationStatement",
        "MedicationAdministration",
        "Medication",
        "AllergyIntolerance",
    }
)
_REGISTRATION_TYPES: Final = frozenset({"Appointment", "Slot", "Schedule"})
#: Patient elements a clash on which cannot harm: contact details, not identity.
_DEMOGRAPHIC_ELEMENTS: Final = frozenset(
    {"name", "telecom", "address", "maritalStatus", "contact", "communication", "photo", "text"}
)


def top_level_element(path: str) -> str:
    """`Patient.telecom[1].use` -> `telecom`; the resource root gives ``""``."""
    _, _, rest = path.partition(".")
    for stop in (".", "["):
        rest = rest.split(stop, 1)[0]
    return rest


def classify_conflict(resource_type: str, paths: Iterable[str]) -> ReviewRoute:
    """Who must review a conflict on `resource_type` at element `paths`."""
    if resource_type in _PRESCRIBER_TYPES:
        return ReviewRoute.PRESCRIBER
    if resource_type in _REGISTRATION_TYPES:
        return ReviewRoute.REGISTRATION
    if resource_type == "Patient":
        elements = {top_level_element(p) for p in paths}
        if elements and elements <= _DEMOGRAPHIC_ELEMENTS:
            return ReviewRoute.AUTO_MERGE
        return ReviewRoute.REGISTRATION
    return ReviewRoute.CLINICIAN


def may_resolve(route: ReviewRoute, roles: Iterable[str]) -> bool:
    return not RESOLVER_ROLES[route].isdisjoint(roles)
