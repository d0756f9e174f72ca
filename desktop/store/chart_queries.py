"""Read-side queries the chart summary needs: a few rows, each found with an index seek.

The summary shows one latest value per vital sign; reading every vital-sign row
of a patient with 5,000 observations to find them costs ~100 ms, these seeks a
fraction of a millisecond (`observation_by_patient_code_date`).
"""

from __future__ import annotations

from desktop.store import indexing
from desktop.store.database import Connection

#: Without statistics SQLite prefers the (patient, vital, date) index and scans every
#: vital sign of the patient for a code it never finds: name the right one.
_BY_CODE = "INDEXED BY observation_by_patient_code_date"
_ROW = (
    "observation_id, patient_id, code, obs_code, label, vital, effective, value, unit"
    f" FROM observation_index {_BY_CODE}"
)


def newest_vital(
    conn: Connection, patient_id: str, code: str, since: str, until: str = "9999"
) -> indexing.ObservationRow | None:
    """The newest vital-sign row of `code` with a value, effective in [since, until].

    Ties on the instant go to the highest observation id (the order the flowsheet uses).
    """
    row = conn.execute(
        f"SELECT {_ROW} WHERE patient_id = ? AND code = ? AND effective >= ?"
        " AND effective <= ? AND vital = 1 AND value IS NOT NULL"
        " ORDER BY effective DESC, observation_id DESC LIMIT 1",
        (patient_id, code, since, until),
    ).fetchone()
    return indexing.ObservationRow(*row) if row else None


def newest_shared_minute(
    conn: Connection, patient_id: str, first_code: str, second_code: str, since: str
) -> str | None:
    """The newest minute (`YYYY-MM-DDTHH:MM`) in which both codes have a vital-sign value.

    Blood pressure is a pair: the flowsheet shows it for a time only when both
    numbers were taken then.
    """
    row = conn.execute(
        f"SELECT substr(a.effective, 1, 16) FROM observation_index a {_BY_CODE}"  # noqa: S608 - constant
        " WHERE a.patient_id = ? AND a.code = ? AND a.effective >= ? AND a.vital = 1"
        f" AND a.value IS NOT NULL AND EXISTS (SELECT 1 FROM observation_index b {_BY_CODE}"
        " WHERE b.patient_id = a.patient_id AND b.code = ?"
        " AND b.effective >= substr(a.effective, 1, 16) || ':00Z'"
        " AND b.effective <= substr(a.effective, 1, 16) || ':59Z'"
        " AND b.vital = 1 AND b.value IS NOT NULL)"
        " ORDER BY a.effective DESC LIMIT 1",
        (patient_id, first_code, since, second_code),
    ).fetchone()
    return str(row[0]) if row else None
