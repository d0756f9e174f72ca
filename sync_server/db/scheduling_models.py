"""Scheduling tables on the shared `Base`; created by migration `0004_scheduling`.

`slot_bookings` holds one row per booked Slot: the primary key on `slot_id` is
what makes a double booking impossible in the database itself. A trigger on
`resources` keeps it in step with every Appointment version written (see the
migration); the application only reads it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from sync_server.db.models import Base


class SlotBookingRow(Base):
    __tablename__ = "slot_bookings"

    slot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    appointment_id: Mapped[str] = mapped_column(Text, nullable=False)
    booked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_slot_bookings_appointment", "appointment_id"),)


class SlotIndexRow(Base):
    """Slots by schedule and start instant (kept by a trigger; the free-slot search reads it)."""

    __tablename__ = "slot_index"

    slot_id: Mapped[str] = mapped_column(Text, primary_key=True)
    schedule_id: Mapped[str] = mapped_column(Text, nullable=False)
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False)

    __table_args__ = (
        Index(
            "ix_slot_index_free",
            "schedule_id",
            "start",
            postgresql_where=text("status = 'free'"),
        ),
    )
