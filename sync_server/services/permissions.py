"""THE role permission matrix: what each role may do with each resource type.

One readable table, no I/O, so tests and the access guard read the same rules.
Letters follow SMART v2 scopes: c=create, r=read, u=update, d=delete, s=search;
`g` (not a SMART letter) means "sign": make a note final / legally binding.

Location scoping and break-the-glass are not here: they depend on the patient,
not on the role (see `access_guard.py` and docs/security.md).
"""

from __future__ import annotations

from typing import Any, Final

ROLES: Final = ("physician", "nurse", "front_desk", "admin")

#: Roles that see patient data at all (admins only do when they also hold one of these).
CLINICAL_ROLES: Final = frozenset({"physician", "nurse", "front_desk"})

_NONE = ""

# fmt: off
#: resource type -> (physician, nurse, front_desk, admin)
PERMISSION_TABLE: Final[dict[str, tuple[str, str, str, str]]] = {
    # Demographics and scheduling: front desk's work.
    "Patient":                  ("crus",   "rs",   "crus",  _NONE),
    "Appointment":              ("cruds",  "crus", "cruds", _NONE),
    "Schedule":                 ("rs",     "rs",   "cruds", _NONE),
    "Slot":                     ("rs",     "rs",   "cruds", _NONE),
    # Directory (no PHI): everyone reads; admins maintain it with the users.
    "Practitioner":             ("rs",     "rs",   "rs",    "cruds"),
    "PractitionerRole":         ("rs",     "rs",   "rs",    "cruds"),
    "Organization":             ("rs",     "rs",   "rs",    "cruds"),
    "Location":                 ("rs",     "rs",   "rs",    "cruds"),
    # Nursing work: vitals, nursing notes, medication administration.
    "Observation":              ("cruds",  "crus", _NONE,   _NONE),
    "DocumentReference":        ("crudsg", "crus", _NONE,   _NONE),
    "Composition":              ("crudsg", "crus", _NONE,   _NONE),
    "MedicationAdministration": ("cruds",  "crus", _NONE,   _NONE),
    "Task":                     ("cruds",  "crus", _NONE,   _NONE),
    "Communication":            ("cruds",  "crus", _NONE,   _NONE),
    # Physician-only writes: problems, prescriptions, orders, plans.
    "Encounter":                ("cruds",  "rs",   _NONE,   _NONE),
    "Condition":                ("cruds",  "rs",   _NONE,   _NONE),
    "AllergyIntolerance":       ("cruds",  "rs",   _NONE,   _NONE),
    "MedicationRequest":        ("cruds",  "rs",   _NONE,   _NONE),
    "MedicationStatement":      ("cruds",  "rs",   _NONE,   _NONE),
    "Medication":               ("cruds",  "rs",   _NONE,   _NONE),
    "Immunization":             ("cruds",  "rs",   _NONE,   _NONE),
    "Procedure":                ("cruds",  "rs",   _NONE,   _NONE),
    "DiagnosticReport":         ("cruds",  "rs",   _NONE,   _NONE),
    "ServiceRequest":           ("cruds",  "rs",   _NONE,   _NONE),
    "CarePlan":                 ("cruds",  "rs",   _NONE,   _NONE),
    "CareTeam":                 ("cruds",  "rs",   _NONE,   _NONE),
    "Goal":                     ("cruds",  "rs",   _NONE,   _NONE),
    "ImagingStudy":             ("cruds",  "rs",   _NONE,   _NONE),
    "Device":                   ("cruds",  "rs",   _NONE,   _NONE),
    "Provenance":               ("crs",    "crs",  _NONE,   _NONE),
    "SupplyDelivery":           ("cruds",  "rs",   _NONE,   _NONE),
    "Claim":                    ("rs",     _NONE,  _NONE,   _NONE),
    "ExplanationOfBenefit":     ("rs",     _NONE,  _NONE,   _NONE),
    # The audit trail: admins read it; nobody writes it through FHIR.
    "AuditEvent":               (_NONE,    _NONE,  _NONE,   "rs"),
}
# fmt: on

#: The `action` names the FHIR repository passes, and the letter each needs.
ACTION_LETTERS: Final[dict[str, str]] = {
    "read": "r",
    "vread": "r",
    "history": "r",
    "search": "s",
    "export": "s",
    "create": "c",
    "update": "u",
    "delete": "d",
    "sign": "g",
}

#: Roles that may open a patient outside their locations ("break the glass").
BREAK_GLASS_ROLES: Final = frozenset({"physician", "nurse"})


def letters_for(role: str, resource_type: str) -> str:
    """The permission letters `role` holds on `resource_type` ("" when none)."""
    row = PERMISSION_TABLE.get(resource_type)
    if row is None or role not in ROLES:
        return _NONE
    return row[ROLES.index(role)]


def role_allows(role: str, action: str, resource_type: str) -> bool:
    letter = ACTION_LETTERS.get(action)
    return letter is not None and letter in letters_for(role, resource_type)


def roles_allow(roles: frozenset[str] | set[str], action: str, resource_type: str) -> bool:
    """True when any of `roles` may do `action` on `resource_type`."""
    return any(role_allows(role, action, resource_type) for role in roles)


def is_admin(roles: frozenset[str] | set[str]) -> bool:
    return "admin" in roles


def may_break_glass(roles: frozenset[str] | set[str]) -> bool:
    return bool(BREAK_GLASS_ROLES & set(roles))


#: LOINC note types written by nurses (nurse note, nurse discharge summary, nurse
#: transfer note): finalising one is not signing a physician note.
NURSING_NOTE_CODES: Final = frozenset({"34746-8", "34745-0", "28651-8"})


def signs_physician_note(resource_type: str, resource: dict[str, Any]) -> bool:
    """True when writing `resource` makes a non-nursing note final: that needs `sign`."""
    if resource_type == "DocumentReference":
        final = resource.get("docStatus") in ("final", "amended")
    elif resource_type == "Composition":
        final = resource.get("status") in ("final", "amended")
    else:
        return False
    codings = (resource.get("type") or {}).get("coding") or []
    codes = {c.get("code") for c in codings if isinstance(c, dict)}
    return final and not codes & NURSING_NOTE_CODES
