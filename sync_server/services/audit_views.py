"""Reading the audit trail: search by patient, agent, period and action; FHIR and NDJSON.

Rows are shown as FHIR R4 `AuditEvent`s (DICOM audit vocabulary for type and
subtype, `outcome` 0/4/8). Reading the trail is itself audited by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from shared_models.errors import ValidationFailed
from sync_server.db.identity_models import AuditEventRow

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_REST = "http://hl7.org/fhir/restful-interaction"
_ACTION_CODES = {
    "create": ("C", _REST, "create"),
    "read": ("R", _REST, "read"),
    "search": ("E", _REST, "search-type"),
    "update": ("U", _REST, "update"),
    "delete": ("D", _REST, "delete"),
    "export": ("R", _DCM, "110106"),
    "login": ("E", _DCM, "110122"),
    "logout": ("E", _DCM, "110123"),
}
_OUTCOMES = {"success": "0", "denied": "4", "failure": "8"}
_OFFLINE = {"system": "urn:ehr:audit", "code": "offline", "display": "offline access"}


@dataclass(frozen=True)
class AuditQuery:
    patient: str | None = None
    agent: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    count: int = 100
    offset: int = 0


def parse_date_params(values: list[str]) -> tuple[datetime | None, datetime | None]:
    """FHIR `date=geYYYY-MM-DD&date=ltYYYY-MM-DD` (ge/gt/le/lt prefixes) as a range."""
    since = until = None
    for value in values:
        prefix, rest = (
            (value[:2], value[2:]) if value[:2] in ("ge", "gt", "le", "lt") else ("", value)
        )
        try:
            moment = datetime.fromisoformat(rest.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationFailed(
                "bad date", issues=[("date", "Use date=geYYYY-MM-DD or an ISO instant")]
            ) from None
        if prefix in ("ge", "gt", ""):
            since = moment
        if prefix in ("le", "lt", ""):
            until = moment
    return since, until


def _select(query: AuditQuery) -> Select[AuditEventRow]:
    stmt = select(AuditEventRow)
    if query.patient:
        stmt = stmt.where(
            AuditEventRow.patient_ids.contains([query.patient.removeprefix("Patient/")])
        )
    if query.agent:
        stmt = stmt.where(AuditEventRow.username == query.agent)
    if query.action:
        stmt = stmt.where(AuditEventRow.action == query.action)
    if query.since:
        stmt = stmt.where(AuditEventRow.recorded >= query.since)
    if query.until:
        stmt = stmt.where(AuditEventRow.recorded < query.until)
    return stmt.order_by(AuditEventRow.pos)


def search(session: Session, query: AuditQuery) -> tuple[list[AuditEventRow], bool]:
    """One page of matching rows (oldest first) and whether more exist."""
    rows = list(session.scalars(_select(query).offset(query.offset).limit(query.count + 1)))
    return rows[: query.count], len(rows) > query.count


def as_fhir(row: AuditEventRow) -> dict[str, Any]:
    letter, system, code = _ACTION_CODES.get(row.action, ("E", _DCM, "110100"))
    agent: dict[str, Any] = {
        "type": {"text": ",".join(row.roles) or "none"},
        "who": {"identifier": {"value": row.username}, "display": row.username},
        "requestor": True,
    }
    if row.source_ip:
        agent["network"] = {"address": row.source_ip, "type": "2"}
    if row.workstation_id:
        agent["altId"] = row.workstation_id
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": row.id,
        "type": {"system": _DCM, "code": "110110", "display": "Patient Record"},
        "subtype": [{"system": system, "code": code, "display": row.action}],
        "action": letter,
        "recorded": row.recorded.isoformat(),
        "outcome": _OUTCOMES.get(row.outcome, "8"),
        "outcomeDesc": row.outcome,
        "agent": [agent],
        "source": {"observer": {"display": "ehr-server"}, "site": row.workstation_id or "server"},
    }
    if row.detail.get("offline"):  # a read made offline, received at a later sync
        event["subtype"].append(_OFFLINE)
        event["period"] = {"start": row.detail.get("accessed_at", event["recorded"])}
    entities = [{"what": {"reference": f"Patient/{p}"}} for p in row.patient_ids]
    if row.resource_type and row.resource_id:
        entities.append({"what": {"reference": f"{row.resource_type}/{row.resource_id}"}})
    if entities:
        event["entity"] = entities
    if "break_glass_reasons" in row.detail or row.action == "break-glass":
        event["purposeOfEvent"] = [
            {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                            "code": "BTG", "display": "break the glass"}]
            }
        ]  # fmt: skip
    return event


def export_ndjson(session: Session, query: AuditQuery, *, batch: int = 1000) -> Iterator[bytes]:
    """Every matching row as one FHIR AuditEvent per line, streamed in `pos` order."""
    last_pos = 0
    while True:
        rows = list(
            session.scalars(_select(query).where(AuditEventRow.pos > last_pos).limit(batch))
        )
        for row in rows:
            yield orjson.dumps(as_fhir(row)) + b"\n"
        if len(rows) < batch:
            return
        last_pos = rows[-1].pos
