"""The chart as the GUI shows it: typed, read-only view-model dataclasses.

`Workstation.load_chart` builds a `ChartView` from the local encrypted cache.
Every item carries its FHIR `id` and the `version` it was read at, so an edit
can be saved with the right base version; `pending` marks a local change not
yet on the server and `conflict` an open conflict on that resource.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class AllergyItem:
    id: str
    version: int | None
    substance: str
    #: FHIR criticality: low | high | unable-to-assess, or "" when unknown.
    criticality: str
    reactions: tuple[str, ...]
    #: FHIR clinicalStatus code (active, inactive, resolved) or "".
    status: str
    pending: bool = False
    conflict: bool = False


@dataclass(frozen=True)
class Banner:
    """Always-visible patient header."""

    patient_id: str
    name: str
    birth_date: date | None
    age_years: int | None
    #: FHIR administrative gender: male | female | other | unknown, or "".
    sex: str
    mrn: str
    #: Substances of the active allergies, for the red banner line.
    allergies: tuple[str, ...]
    deceased: bool = False


@dataclass(frozen=True)
class ProblemItem:
    id: str
    version: int | None
    text: str
    #: "system|code" of the first coding, or "".
    code: str
    onset: str
    status: str
    pending: bool = False
    conflict: bool = False


@dataclass(frozen=True)
class MedicationItem:
    id: str
    version: int | None
    resource_type: str  # MedicationRequest or MedicationStatement
    text: str
    code: str
    dosage: str
    authored_on: str
    status: str
    pending: bool = False
    conflict: bool = False


@dataclass(frozen=True)
class VitalValue:
    """One measured quantity: a plain observation has one, a BP panel two."""

    code: str  # LOINC code of the observation or of the component
    label: str
    value: float | None
    unit: str


@dataclass(frozen=True)
class VitalReading:
    observation_id: str
    code: str  # LOINC code of the observation itself (85354-9 for a BP panel)
    label: str
    effective: datetime
    values: tuple[VitalValue, ...]
    pending: bool = False


@dataclass(frozen=True)
class LatestVital:
    """The newest value of one flowsheet row, for the summary."""

    row: str  # flowsheet row: bp, heart_rate, temperature ...
    label: str
    text: str  # value and unit: "128/84 mmHg"
    when: datetime


@dataclass(frozen=True)
class NoteItem:
    id: str
    version: int | None
    resource_type: str  # DocumentReference or Composition
    title: str
    date: str
    author: str
    #: FHIR docStatus/status: preliminary, final, amended, entered-in-error ...
    status: str
    pending: bool = False
    conflict: bool = False


@dataclass(frozen=True)
class AppointmentItem:
    id: str
    version: int | None
    start: datetime | None
    end: datetime | None
    description: str
    status: str
    location_id: str | None
    practitioner_id: str | None


@dataclass(frozen=True)
class ChartView:
    banner: Banner
    problems: tuple[ProblemItem, ...]
    medications: tuple[MedicationItem, ...]
    allergies: tuple[AllergyItem, ...]
    #: Vital-sign observations of the last two years, newest first; empty when the
    #: chart was loaded without them (`load_chart(..., vitals=False)`: the summary).
    vitals: tuple[VitalReading, ...]
    #: The newest value of each flowsheet row in the same two years (always loaded).
    latest_vitals: tuple[LatestVital, ...]
    #: Notes, newest first.
    notes: tuple[NoteItem, ...]
    #: Appointments from now on, soonest first.
    appointments: tuple[AppointmentItem, ...]
    #: Ids of this chart's resources with a local change not yet on the server.
    pending_ids: frozenset[str] = frozenset()
    #: Ids of this chart's resources with an open conflict.
    conflict_ids: frozenset[str] = frozenset()
    #: Ids whose server version is newer than the local edit on screen.
    newer_on_server_ids: frozenset[str] = frozenset()
