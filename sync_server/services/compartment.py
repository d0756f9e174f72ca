"""Which patient a resource belongs to, and where a patient is cared for.

The Patient compartment owner is the patient a resource's `patient` search
parameter names (`subject`, `patient`, `participant.actor` ... see
`search_params`); a Patient owns itself. Practitioner, Location, Organization,
Schedule and Slot have no owner.

Care sites (DESIGN.md): a patient is cared for at a location when an
Encounter or Appointment of theirs names that Location. The repository keeps
`patient_locations` exact on every write of those types: one row per
(source resource, location), replaced when the source changes, removed when
it is deleted. Access scoping and the sync pull read that table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg import Connection

from sync_server.services.search_params import element_values, params_for, patient_param

#: Types whose Location references make a care-site link, and the parameter naming them.
CARE_SITE_PARAMS: dict[str, str] = {"Encounter": "location", "Appointment": "location"}


def patient_of(resource_type: str, resource_id: str, resource: dict[str, Any]) -> str | None:
    """Id of the patient whose compartment the resource is in (None if none)."""
    if resource_type == "Patient":
        return resource_id
    param = patient_param(resource_type)
    if param is None:
        return None
    for element in element_values(resource, param):
        reference = element.get("reference") if isinstance(element, dict) else None
        if isinstance(reference, str):
            type_, _, id_ = reference.partition("/")
            if type_ == "Patient" and id_ and "/" not in id_:
                return id_
            if "/Patient/" in reference:  # absolute URL
                return reference.rsplit("/Patient/", 1)[1].split("/")[0]
    return None


def care_site_location_ids(resource_type: str, resource: dict[str, Any]) -> set[str]:
    """Ids of the Locations an Encounter or Appointment names."""
    name = CARE_SITE_PARAMS.get(resource_type)
    if name is None:
        return set()
    param = params_for(resource_type)[name]
    found: set[str] = set()
    for element in element_values(resource, param):
        reference = element.get("reference") if isinstance(element, dict) else None
        if isinstance(reference, str) and reference.startswith("Location/"):
            found.add(reference.split("/")[1])
    return found


CareSiteChange = tuple[str, str, str | None, dict[str, Any] | None]


def refresh_care_sites(conn: Connection[Any], changes: Sequence[CareSiteChange]) -> None:
    """Replace the care-site links of each written (type, id, patient_id, resource|None)."""
    relevant = [c for c in changes if c[0] in CARE_SITE_PARAMS]
    if not relevant:
        return
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM patient_locations WHERE (source_type, source_id) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[]))",
            ([c[0] for c in relevant], [c[1] for c in relevant]),
        )
        rows = list(_link_rows(relevant))
        if rows:
            cur.executemany(
                "INSERT INTO patient_locations (source_type, source_id, location_id, patient_id)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )


def _link_rows(changes: Iterable[CareSiteChange]) -> Iterable[tuple[str, str, str, str]]:
    for resource_type, resource_id, patient_id, resource in changes:
        if resource is None or patient_id is None:
            continue
        for location_id in sorted(care_site_location_ids(resource_type, resource)):
            yield resource_type, resource_id, location_id, patient_id
