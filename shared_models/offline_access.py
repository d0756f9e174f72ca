"""Offline chart reads sent to the server's audit trail (`POST /sync/access-log`).

DESIGN.md: chart reads made offline reach the server's audit trail at the next
sync. The workstation keeps each read locally (`desktop.store.access_log`) and
sends them in batches; the server records each as an `AuditEvent` marked as
offline access with its original time. `record_id` makes a re-sent record (a
sync interrupted after the server stored it) count once.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

#: Largest batch one request may carry.
MAX_ACCESS_RECORDS = 500
#: Namespace of the record ids a workstation derives (see `record_id`).
RECORD_NAMESPACE = uuid.UUID("6f1f3c55-2b1e-4c8e-9a39-3f0d1c7b8e21")

AccessAction = Literal["read"]


def record_id(workstation_id: str, seq: int, at: datetime) -> str:
    """A stable id for one local access row: the same row always gets the same id.

    The local time (microseconds) is part of it, so a profile recreated with the
    same workstation id and a restarted row counter never repeats an old id.
    """
    return str(uuid.uuid5(RECORD_NAMESPACE, f"{workstation_id}|{seq}|{at.isoformat()}"))


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AccessRecord(_Message):
    record_id: str = Field(min_length=1, max_length=64)
    username: str = Field(min_length=1, max_length=200)
    patient_id: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")
    action: AccessAction
    #: When the chart was read, by the workstation's clock.
    at: AwareDatetime


class AccessLogBatch(_Message):
    workstation_id: str = Field(min_length=1, max_length=200)
    records: list[AccessRecord] = Field(max_length=MAX_ACCESS_RECORDS)


class AccessLogAck(_Message):
    #: Every record id of the batch: stored now or already stored before.
    acknowledged: list[str]
    #: How many of them were new.
    stored: int
