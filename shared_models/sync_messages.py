"""Sync protocol messages (DESIGN.md, "Sync protocol (contract)").

Pydantic models both sides use: the server to parse requests and shape
answers, the desktop to build requests and read answers. Field names are the
wire names of the contract; extra fields are accepted and ignored so either
side can grow the protocol.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Largest batch a push may carry (DESIGN.md).
MAX_PUSH_CHANGES = 500
#: Largest page a pull may ask for, and the default one.
MAX_PULL_LIMIT = 5000
DEFAULT_PULL_LIMIT = 500
#: The cursor of a workstation's first pull.
INITIAL_CURSOR = "0"


def conflict_digest(conflict_ids: Iterable[str]) -> str:
    """A fingerprint of a set of open conflict ids, computed the same way on both sides.

    The last page of a pull carries the server's (`open_conflicts`) for the
    conflicts its caller may see; a workstation whose own open list has the
    same fingerprint skips listing the queue (`GET /sync/conflicts`).
    """
    return hashlib.sha256("\n".join(sorted(conflict_ids)).encode()).hexdigest()[:32]


PushStatus = Literal["applied", "merged", "conflict", "rejected"]
Resolution = Literal["keep_server", "keep_mine", "merged"]
ConflictState = Literal["open", "resolved"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Change(_Message):
    """One entry of a pull page: a version of a resource, or its leaving scope."""

    seq: int | None
    resourceType: str
    id: str
    versionId: int | None = None
    deleted: bool = False
    resource: dict[str, Any] | None = None
    out_of_scope: bool = False


class PullResponse(_Message):
    changes: list[Change]
    cursor: str
    has_more: bool


class PushChange(_Message):
    change_id: str = Field(min_length=1, max_length=200)
    resourceType: str = Field(min_length=1, max_length=64)
    id: str = Field(min_length=1, max_length=64)
    op: Literal["upsert", "delete"]
    base_version: int | None = Field(default=None, ge=0)
    resource: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _resource_matches_op(self) -> Self:
        if self.op == "upsert" and self.resource is None:
            raise ValueError("an upsert carries the resource")
        return self


class PushRequest(_Message):
    client_id: str = Field(min_length=1, max_length=200)
    changes: list[PushChange] = Field(max_length=MAX_PUSH_CHANGES)


class PushResult(_Message):
    change_id: str
    status: PushStatus
    versionId: int | None = None
    resource: dict[str, Any] | None = None
    conflict_id: str | None = None
    #: OperationOutcome issue entries (severity, code, diagnostics, expression).
    issues: list[dict[str, Any]] = Field(default_factory=list)
    #: On a conflict: the base version the change was made on, as the review queue
    #: holds it (None when the change named none), so the conflict is stored whole.
    base_resource: dict[str, Any] | None = None


class PushResponse(_Message):
    results: list[PushResult]


class ConflictRecord(_Message):
    """An entry of the review queue, with the three versions stored whole."""

    id: str
    resourceType: str
    resource_id: str
    patient_id: str | None
    status: ConflictState
    route: str
    rule: str
    reason: str
    paths: list[str]
    base_version: int | None
    server_version: int | None
    base_resource: dict[str, Any] | None
    server_resource: dict[str, Any] | None
    client_resource: dict[str, Any] | None
    client_deleted: bool
    created_by: str
    workstation_id: str | None
    client_id: str
    created_at: datetime
    resolution: Resolution | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolved_version: int | None = None


class ConflictList(_Message):
    conflicts: list[ConflictRecord]


class ResolveRequest(_Message):
    resolution: Resolution
    #: The resource to keep when `resolution` is `merged`.
    resource: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _merged_carries_resource(self) -> Self:
        if self.resolution == "merged" and self.resource is None:
            raise ValueError("a merged resolution carries the merged resource")
        return self
