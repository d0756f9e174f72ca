"""Scheduling: `slot_bookings`, the table that makes a double booking impossible; `slot_index`.

One row per (slot, appointment holding it), kept by a trigger on `resources`
in the same statement that writes the Appointment's new version, whoever
writes it (the scheduling API, the FHIR API, a sync push, an import). The
primary key on `slot_id` means a second appointment holding the same slot
fails with a unique violation, also when two server processes race: the loser
waits for the winner's commit, then fails. Cancelled, no-show and
entered-in-error appointments hold no slot (as in `merge_policy`).

`slot_index` (slot, schedule, start instant, status), kept by another trigger on
`resources`, lets the free-slot search read each schedule's next free slots
from one index, whatever the planner's statistics say.

Revision ID: 0004_scheduling
Revises: 0003_sync
"""

from __future__ import annotations

from alembic import op

revision = "0004_scheduling"
down_revision = "0003_sync"
branch_labels = None
depends_on = None

_STATEMENTS = (
    """
    CREATE TABLE slot_bookings (
        slot_id text NOT NULL,
        appointment_id text NOT NULL,
        booked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
        CONSTRAINT slot_bookings_pkey PRIMARY KEY (slot_id)
    )""",
    "CREATE INDEX ix_slot_bookings_appointment ON slot_bookings (appointment_id)",
    # The Slot ids an Appointment holds (none when cancelled, no-show or void).
    """
    CREATE FUNCTION appointment_held_slots(appointment jsonb) RETURNS SETOF text
    LANGUAGE sql IMMUTABLE AS $$
        SELECT DISTINCT substr(s.value->>'reference', 6)
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(appointment->'slot') = 'array'
                                  THEN appointment->'slot' ELSE '[]'::jsonb END) AS s
        WHERE left(s.value->>'reference', 5) = 'Slot/'
          AND coalesce(appointment->>'status', '')
              NOT IN ('cancelled', 'noshow', 'entered-in-error')
    $$""",
    """
    CREATE FUNCTION keep_slot_bookings() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM slot_bookings WHERE appointment_id = NEW.id
            AND (NEW.deleted OR slot_id NOT IN (SELECT appointment_held_slots(NEW.resource)));
        IF NOT NEW.deleted THEN
            INSERT INTO slot_bookings (slot_id, appointment_id)
            SELECT h.slot_id, NEW.id FROM appointment_held_slots(NEW.resource) AS h(slot_id)
            WHERE NOT EXISTS (SELECT 1 FROM slot_bookings b
                              WHERE b.slot_id = h.slot_id AND b.appointment_id = NEW.id);
        END IF;
        RETURN NULL;
    END $$""",
    """
    CREATE TRIGGER resources_slot_bookings AFTER INSERT OR UPDATE ON resources
    FOR EACH ROW WHEN (NEW.resource_type = 'Appointment')
    EXECUTE FUNCTION keep_slot_bookings()""",
    # Slots by schedule and start instant: the free-slot search walks this index.
    """
    CREATE TABLE slot_index (
        slot_id text PRIMARY KEY,
        schedule_id text NOT NULL,
        start timestamptz NOT NULL,
        status text NOT NULL
    )""",
    "CREATE INDEX ix_slot_index_free ON slot_index (schedule_id, start) WHERE status = 'free'",
    """
    CREATE FUNCTION keep_slot_index() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        schedule text := NEW.resource->'schedule'->>'reference';
    BEGIN
        IF NEW.deleted OR left(schedule, 9) <> 'Schedule/' OR NEW.resource->>'start' IS NULL THEN
            DELETE FROM slot_index WHERE slot_id = NEW.id;
        ELSE
            INSERT INTO slot_index (slot_id, schedule_id, start, status)
            VALUES (NEW.id, substr(schedule, 10), (NEW.resource->>'start')::timestamptz,
                    coalesce(NEW.resource->>'status', ''))
            ON CONFLICT (slot_id) DO UPDATE SET schedule_id = EXCLUDED.schedule_id,
                start = EXCLUDED.start, status = EXCLUDED.status;
        END IF;
        RETURN NULL;
    END $$""",
    """
    CREATE TRIGGER resources_slot_index AFTER INSERT OR UPDATE ON resources
    FOR EACH ROW WHEN (NEW.resource_type = 'Slot')
    EXECUTE FUNCTION keep_slot_index()""",
    """
    INSERT INTO slot_index (slot_id, schedule_id, start, status)
    SELECT id, substr(resource->'schedule'->>'reference', 10), (resource->>'start')::timestamptz,
           coalesce(resource->>'status', '')
    FROM resources WHERE resource_type = 'Slot' AND NOT deleted
      AND left(resource->'schedule'->>'reference', 9) = 'Schedule/'
      AND resource->>'start' IS NOT NULL""",
    # Appointments stored before this revision: the first holder of a slot keeps it.
    """
    INSERT INTO slot_bookings (slot_id, appointment_id)
    SELECT h.slot_id, r.id FROM resources r, appointment_held_slots(r.resource) AS h(slot_id)
    WHERE r.resource_type = 'Appointment' AND NOT r.deleted
    ORDER BY r.last_updated
    ON CONFLICT DO NOTHING""",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS resources_slot_index ON resources")
    op.execute("DROP FUNCTION IF EXISTS keep_slot_index()")
    op.execute("DROP TABLE IF EXISTS slot_index")
    op.execute("DROP TRIGGER IF EXISTS resources_slot_bookings ON resources")
    op.execute("DROP FUNCTION IF EXISTS keep_slot_bookings()")
    op.execute("DROP FUNCTION IF EXISTS appointment_held_slots(jsonb)")
    op.execute("DROP TABLE IF EXISTS slot_bookings")
