"""Sync tables: push idempotency, the conflict review queue, pull scope snapshots.

Defined on the shared `Base`; created by migration `0003_sync`.

- `sync_push_log`: one row per accepted `change_id` with the hash of the
  change and the answer given, so the same change sent again is answered the
  same way and never applied twice. A change the server refused keeps its
  payload here, so no client version is ever lost.
- `sync_conflicts`: the review queue; the base, server and client versions
  stored whole, with who pushed from which workstation and when.
- `sync_scope_snapshots`: the set of patients a pull cursor's scope covered,
  stored once per distinct set (content-addressed), so a cursor stays small
  and a retried pull computes the same scope change.
- `sync_cursor_keys`: the HMAC key that signs pull cursors.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Boolean, DateTime, Index, Integer, LargeBinary, SmallInteger, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sync_server.db.models import Base


class PushLogRow(Base):
    __tablename__ = "sync_push_log"

    change_id: Mapped[str] = mapped_column(Text, primary_key=True)
    client_id: Mapped[str] = mapped_column(Text, nullable=False)
    username: Mapped[str] = mapped_column(Text, nullable=False)
    #: SHA-256 of the change's canonical JSON: a reused id with another payload is refused.
    request_hash: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)
    resource_type: Mapped[str] = mapped_column(Text, nullable=False)
    resource_id: Mapped[str] = mapped_column(Text, nullable=False)
    #: The version the answer names (read back from `resource_versions` on a replay).
    version_id: Mapped[int | None] = mapped_column(Integer)
    conflict_id: Mapped[str | None] = mapped_column(Text)
    issues: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, nullable=False)
    #: The change as sent, kept only when it was rejected (nothing lost).
    rejected_change: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ConflictRow(Base):
    __tablename__ = "sync_conflicts"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    resource_type: Mapped[str] = mapped_column(Text, nullable=False)
    resource_id: Mapped[str] = mapped_column(Text, nullable=False)
    patient_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, nullable=False)  # open | resolved
    route: Mapped[str] = mapped_column(Text, nullable=False)
    rule: Mapped[str] = mapped_column(Text, nullable=False)
    paths: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    base_version: Mapped[int | None] = mapped_column(Integer)
    server_version: Mapped[int | None] = mapped_column(Integer)
    base_resource: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    server_resource: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    client_resource: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    client_deleted: Mapped[bool] = mapped_column(Boolean, nullable=False)
    created_by: Mapped[str] = mapped_column(Text, nullable=False)
    workstation_id: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str] = mapped_column(Text, nullable=False)
    change_id: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    resolved_version: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_sync_conflicts_open", "status", "patient_id"),
        Index("ix_sync_conflicts_resource", "resource_type", "resource_id"),
    )


class ScopeSnapshotRow(Base):
    __tablename__ = "sync_scope_snapshots"

    digest: Mapped[str] = mapped_column(Text, primary_key=True)
    #: Sorted patient ids; "" stands for the resources outside any patient compartment.
    patient_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class CursorKeyRow(Base):
    __tablename__ = "sync_cursor_keys"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    secret: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
