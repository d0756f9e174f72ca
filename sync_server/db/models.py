"""The FHIR store schema: one generic store for every resource type.

`resources` holds the current version of each resource (a tombstone after a
delete), `resource_versions` every version ever accepted, in commit-sequence
order (`seq`, `txid`: the sync pull builds its gap-free cursor on them), and
the `search_*` tables the index rows extracted per search parameter. The
schema is created only by the Alembic migrations; these models describe it
for queries and for the other modules that add their tables to `Base`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    Numeric,
    Sequence,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType


class Xid8(UserDefinedType[str]):
    """PostgreSQL's 64-bit transaction id type (values read back as text)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


class Base(DeclarativeBase):
    """Declarative base every server table is defined on (identity, audit, sync add theirs)."""


RESOURCE_VERSION_SEQ = Sequence("resource_versions_seq")


class ResourceRow(Base):
    """Current version of a resource; `deleted` marks a tombstone (resource is NULL)."""

    __tablename__ = "resources"

    resource_type: Mapped[str] = mapped_column(Text, primary_key=True)
    id: Mapped[str] = mapped_column(Text, primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, nullable=False)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    #: The Patient compartment owner (None for Practitioner, Location, Organization ...).
    patient_id: Mapped[str | None] = mapped_column(Text)
    resource: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        Index("ix_resources_patient", "patient_id", "resource_type"),
        Index("ix_resources_type_updated", "resource_type", "last_updated"),
    )


class ResourceVersionRow(Base):
    """Every accepted version, tombstones included: exactly one row per write."""

    __tablename__ = "resource_versions"

    seq: Mapped[int] = mapped_column(
        BigInteger,
        RESOURCE_VERSION_SEQ,
        primary_key=True,
        server_default=RESOURCE_VERSION_SEQ.next_value(),
    )
    #: Writing transaction (xid8); lets the sync pull wait for late committers.
    txid: Mapped[str] = mapped_column(
        Xid8(),
        nullable=False,
        server_default=text("pg_current_xact_id()"),
    )
    resource_type: Mapped[str] = mapped_column(Text, nullable=False)
    id: Mapped[str] = mapped_column(Text, nullable=False)
    version_id: Mapped[int] = mapped_column(Integer, nullable=False)
    last_updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    deleted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    patient_id: Mapped[str | None] = mapped_column(Text)
    resource: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        Index("ux_resource_versions_key", "resource_type", "id", "version_id", unique=True),
        Index("ix_resource_versions_patient", "patient_id", "seq"),
    )


class PatientLocationRow(Base):
    """A patient is cared for at a location because this Encounter/Appointment names it."""

    __tablename__ = "patient_locations"

    source_type: Mapped[str] = mapped_column(Text, primary_key=True)
    source_id: Mapped[str] = mapped_column(Text, primary_key=True)
    location_id: Mapped[str] = mapped_column(Text, primary_key=True)
    patient_id: Mapped[str] = mapped_column(Text, nullable=False)

    __table_args__ = (
        Index("ix_patient_locations_location", "location_id", "patient_id"),
        Index("ix_patient_locations_patient", "patient_id", "location_id"),
    )


class _IndexColumns:
    """Columns every search-index row has: which resource, which parameter."""

    resource_type: Mapped[str] = mapped_column(Text, primary_key=True)
    resource_id: Mapped[str] = mapped_column(Text, primary_key=True)
    param: Mapped[str] = mapped_column(Text, primary_key=True)
    ordinal: Mapped[int] = mapped_column(Integer, primary_key=True)


class SearchTokenRow(_IndexColumns, Base):
    __tablename__ = "search_token"
    system: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str] = mapped_column(Text, nullable=False)
    __table_args__ = (Index("ix_search_token_lookup", "resource_type", "param", "code", "system"),)


class SearchStringRow(_IndexColumns, Base):
    __tablename__ = "search_string"
    #: Lower-cased, accents removed: what `name=` prefix matching compares.
    value: Mapped[str] = mapped_column(Text, nullable=False)
    __table_args__ = (
        Index(
            "ix_search_string_lookup",
            "resource_type",
            "param",
            text("value text_pattern_ops"),
        ),
    )


class SearchDateRow(_IndexColumns, Base):
    __tablename__ = "search_date"
    #: The instant range [low, high) the element's value covers.
    low: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    high: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    __table_args__ = (Index("ix_search_date_lookup", "resource_type", "param", "low", "high"),)


class SearchReferenceRow(_IndexColumns, Base):
    __tablename__ = "search_reference"
    target_type: Mapped[str | None] = mapped_column(Text)
    target_id: Mapped[str] = mapped_column(Text, nullable=False)
    __table_args__ = (
        Index("ix_search_reference_lookup", "resource_type", "param", "target_id", "target_type"),
    )


class SearchQuantityRow(_IndexColumns, Base):
    __tablename__ = "search_quantity"
    value: Mapped[Decimal] = mapped_column(Numeric, nullable=False)
    system: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("ix_search_quantity_lookup", "resource_type", "param", "value"),)


#: Search-index table per parameter kind.
INDEX_TABLES: dict[str, str] = {
    "token": "search_token",
    "string": "search_string",
    "date": "search_date",
    "reference": "search_reference",
    "quantity": "search_quantity",
}
