"""Scheduling at /scheduling: thin routes over `sync_server.services.scheduling`.

Answers are FHIR JSON: the Appointment after each change, a `searchset`
Bundle of free Slots. A slot that is already taken answers 409 with an
OperationOutcome that carries the nearest free Slots as `contained`
resources, so the front desk can rebook in one step.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from shared_models import outcomes
from shared_models.errors import ValidationFailed
from shared_models.scheduling import ScheduleTemplate, SlotUnavailable
from sync_server.api.deps import RepositoryDep
from sync_server.api.errors import fhir_response
from sync_server.services import scheduling
from sync_server.services.fhir_repository import StoredResource, new_id

router = APIRouter(prefix="/scheduling", tags=["Scheduling"])


class GenerateRequest(BaseModel):
    schedule: str
    template: dict[str, Any]
    first_day: date = Field(alias="from")
    last_day: date = Field(alias="to")


class BookRequest(BaseModel):
    slot: str
    patient: str
    description: str | None = Field(default=None, max_length=500)
    appointment_id: str | None = None


class RescheduleRequest(BaseModel):
    appointment: str
    slot: str


class StatusRequest(BaseModel):
    appointment: str
    reason: str | None = Field(default=None, max_length=500)


def _id(reference: str) -> str:
    return reference.rpartition("/")[2]


def _appointment(stored: StoredResource, status: int = 200) -> Response:
    return fhir_response(stored.json or b"{}", status, {"ETag": stored.etag})


def _slot_taken(exc: SlotUnavailable) -> Response:
    body = outcomes.outcome(
        outcomes.issue("error", "conflict", exc.user_message, "Appointment.slot")
    )
    if exc.alternatives:
        body["contained"] = exc.alternatives
    return fhir_response(body, 409)


@router.post("/slots/generate")
def generate(repo: RepositoryDep, request: GenerateRequest) -> Response:
    """Fill a Schedule with free Slots from a weekly template; repeats add only what is missing."""
    result = scheduling.generate_slots(
        repo=repo,
        schedule_id=_id(request.schedule),
        template=ScheduleTemplate.from_json(request.template),
        first_day=request.first_day,
        last_day=request.last_day,
    )
    return fhir_response({"created": result.created, "existing": result.existing})


@router.get("/free-slots")
def free_slots(
    repo: RepositoryDep,
    start: datetime,
    end: datetime | None = None,
    practitioner: str | None = None,
    location: str | None = None,
    count: Annotated[int, Query(ge=1, le=scheduling.MAX_FREE_SLOTS)] = 20,
) -> Response:
    """Free Slots of a practitioner, a location (any practitioner there) or both."""
    if start.tzinfo is None or (end is not None and end.tzinfo is None):
        raise ValidationFailed("naive time", issues=[("start", "Give times with an offset")])
    schedules = scheduling.schedules_for(repo, practitioner=practitioner, location=location)
    slots = scheduling.free_slots(
        repo=repo, schedule_ids=schedules, start=start, end=end, count=count
    )
    bundle = {
        "resourceType": "Bundle",
        "id": new_id(),
        "type": "searchset",
        "total": len(slots),
        "entry": [{"resource": s, "search": {"mode": "match"}} for s in slots],
    }
    return Response(orjson.dumps(bundle), media_type="application/fhir+json")


@router.post("/book")
def book(repo: RepositoryDep, request: BookRequest) -> Response:
    try:
        stored = scheduling.book(
            repo=repo,
            slot_id=_id(request.slot),
            patient_id=_id(request.patient),
            description=request.description,
            appointment_id=request.appointment_id,
        )
    except SlotUnavailable as exc:
        return _slot_taken(exc)
    return _appointment(stored, 201)


@router.post("/reschedule")
def reschedule(repo: RepositoryDep, request: RescheduleRequest) -> Response:
    try:
        stored = scheduling.reschedule(
            repo=repo, appointment_id=_id(request.appointment), slot_id=_id(request.slot)
        )
    except SlotUnavailable as exc:
        return _slot_taken(exc)
    return _appointment(stored)


def _status_route(action: str, path: str) -> None:
    def change(repo: RepositoryDep, request: StatusRequest) -> Response:
        stored = scheduling.change_status(
            repo=repo, appointment_id=_id(request.appointment), action=action,
            reason=request.reason,
        )  # fmt: skip
        return _appointment(stored)

    change.__doc__ = f"Appointment status change: {action}."
    router.add_api_route(path, change, methods=["POST"], name=f"scheduling_{action}")


for _action, _path in (
    ("cancel", "/cancel"),
    ("check-in", "/check-in"),
    ("no-show", "/no-show"),
    ("fulfil", "/fulfil"),
):
    _status_route(_action, _path)
