"""The clinician's worklist: open conflicts, changes the server refused, unsigned drafts.

Built from the local store (no network). Drafts are the unsigned notes still
waiting in the outbox of this workstation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson

from desktop.store import conflicts, outbox, resources
from desktop.store.database import Connection
from shared_models.risk import ReviewRoute, classify_conflict

TYPE_WORDS = {
    "AllergyIntolerance": "Allergy",
    "Condition": "Problem",
    "MedicationRequest": "Medication",
    "MedicationStatement": "Medication",
    "Observation": "Vital signs",
    "DocumentReference": "Note",
    "Patient": "Demographics",
    "Appointment": "Appointment",
}


@dataclass(frozen=True)
class WorkItem:
    kind: str  # "conflict" | "refused" | "draft"
    patient_id: str | None
    patient_name: str
    title: str
    detail: str
    since: datetime
    resource_type: str
    resource_id: str
    conflict_id: str | None = None


def _name(conn: Connection, patient_id: str | None, cache: dict[str, str]) -> str:
    if not patient_id:
        return ""
    if patient_id not in cache:
        summary = resources.patient_summary(conn, patient_id)
        cache[patient_id] = summary.display_name if summary else "Patient not on this computer"
    return cache[patient_id]


def build_worklist(conn: Connection) -> list[WorkItem]:
    names: dict[str, str] = {}
    items: list[WorkItem] = []
    for record in conflicts.open_conflicts(conn):
        what = TYPE_WORDS.get(record.resource_type, record.resource_type)
        refused = record.status != "conflict"
        problem = "not accepted by the server" if refused else "changed in two places"
        if not refused and classify_conflict(record.resource_type, ()) == ReviewRoute.PRESCRIBER:
            problem += " (a physician decides)"
        items.append(
            WorkItem(
                kind="refused" if refused else "conflict",
                patient_id=record.patient_id,
                patient_name=_name(conn, record.patient_id, names),
                title=f"{what}: {problem}",
                detail=record.reason,
                since=record.created_at,
                resource_type=record.resource_type,
                resource_id=record.id,
                conflict_id=record.conflict_id,
            )
        )
    for entry in outbox.pending(conn):
        what = TYPE_WORDS.get(entry.resource_type, entry.resource_type)
        if entry.last_error:
            kind, title, detail = "refused", f"{what}: not sent yet", entry.last_error
        elif entry.resource_type == "DocumentReference" and entry.json:
            resource = orjson.loads(entry.json)
            if resource.get("docStatus") != "preliminary":
                continue
            kind, title, detail = "draft", f"Draft: {resource.get('description', 'note')}", ""
        else:
            continue
        items.append(
            WorkItem(
                kind=kind,
                patient_id=entry.patient_id,
                patient_name=_name(conn, entry.patient_id, names),
                title=title,
                detail=detail,
                since=entry.created_at,
                resource_type=entry.resource_type,
                resource_id=entry.id,
            )
        )
    return _latest_draft_only(items)


def _latest_draft_only(items: list[WorkItem]) -> list[WorkItem]:
    """An autosaved draft has one outbox row per save: list each draft once."""
    seen: set[str] = set()
    out: list[WorkItem] = []
    for item in sorted(items, key=lambda i: i.since, reverse=True):
        if item.kind == "draft":
            if item.resource_id in seen:
                continue
            seen.add(item.resource_id)
        out.append(item)
    order = {"conflict": 0, "refused": 1, "draft": 2}
    return sorted(out, key=lambda i: (order[i.kind], i.since))
