"""Sizes of the server's sync queues, for the `/metrics` gauges.

Today the one queue is the conflict review queue, counted per routing target
(prescriber, clinician, front desk ...) plus its total as `conflicts_open`.
Counts only: no resource content leaves the database.
"""

from __future__ import annotations

from sqlalchemy import Engine, func, select

from sync_server.db.sync_models import ConflictRow


def sync_queue_sizes(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(ConflictRow.route, func.count())
            .where(ConflictRow.status == "open")
            .group_by(ConflictRow.route)
        ).all()
    sizes = {f"conflicts_open_{route}": int(count) for route, count in rows}
    sizes["conflicts_open"] = sum(sizes.values())
    return sizes
