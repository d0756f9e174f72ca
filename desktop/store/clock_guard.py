"""The latest time this workstation's clock has shown, kept in the encrypted database.

Offline sign-in is allowed for a window that starts at the last online sign-in.
Setting the clock back would stretch that window, so the store remembers the
latest time it has seen and the offline checks use whichever time is later.
An online sign-in resets the mark, so a clock that once ran ahead and was then
corrected does not lock anyone out for good.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from desktop.store import sync_state
from desktop.store.database import Connection

KEY = "clock_high_water"

#: Clocks drift and get corrected by a few minutes; only a larger step back counts.
TOLERANCE = timedelta(minutes=10)


def high_water(conn: Connection) -> datetime | None:
    value = sync_state.get(conn, KEY)
    return datetime.fromisoformat(value) if value else None


def observe(conn: Connection, now: datetime) -> None:
    """Remember `now` if it is later than the mark."""
    seen = high_water(conn)
    if seen is None or now > seen:
        sync_state.put(conn, KEY, now.isoformat())


def reset(conn: Connection, now: datetime) -> None:
    """Set the mark to `now` (after an online sign-in)."""
    sync_state.put(conn, KEY, now.isoformat())


def set_back(conn: Connection, now: datetime) -> datetime | None:
    """The mark when the clock now reads more than `TOLERANCE` before it, else None."""
    seen = high_water(conn)
    return seen if seen is not None and now < seen - TOLERANCE else None
