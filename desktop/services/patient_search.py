"""Patient search: one text box for a name prefix, an MRN or a birth date."""

from __future__ import annotations

import re
from datetime import date

from desktop.store import resources
from desktop.store.database import Connection
from desktop.store.resources import PatientSummary

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
MAX_LIMIT = 500


def search_patients(conn: Connection, text: str, limit: int = 50) -> list[PatientSummary]:
    """`2019-01-31` -> birth date; `Smi Jo` -> name prefixes; anything else also tried as MRN.

    An exact MRN match comes first, then name matches.
    """
    text = text.strip()
    limit = max(1, min(limit, MAX_LIMIT))
    if not text:
        return []
    if _DATE.match(text):
        try:
            date.fromisoformat(text)
        except ValueError:
            return []
        return resources.patients_by_birth_date(conn, text, limit)
    found = resources.patients_by_mrn(conn, text, limit)
    words = _WORD.findall(text)
    if words and len(found) < limit:
        seen = {p.patient_id for p in found}
        found += [
            p
            for p in resources.patients_by_name_prefixes(conn, words, limit)
            if p.patient_id not in seen
        ][: limit - len(found)]
    return found
