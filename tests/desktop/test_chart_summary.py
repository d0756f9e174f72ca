"""The chart summary without the vital-sign readings: same latest values, found by index.

`load_chart(..., vitals=False)` finds the latest value of each vital sign with a
few index seeks (`desktop.store.chart_queries`). These tests check that it shows
exactly what the full flowsheet's newest filled cell shows, on Synthea charts
and on awkward readings (two in one minute, a systolic without a diastolic, the
other oximetry code, readings older than the two-year window).
"""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from desktop_store_helpers import as_changes, synthea_resources

from desktop.services import chart_loader
from desktop.services.vitals import build_flowsheet, latest_values
from desktop.store import chart_queries
from desktop.store.database import ChartDatabase
from desktop.store.remote_changes import apply_remote_page
from shared_models.vitals import vitals_observations

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _expected(db: ChartDatabase, patient_id: str, now: datetime) -> dict[str, tuple[str, datetime]]:
    """What the summary showed before: the latest cells of the full flowsheet."""
    full = chart_loader.load_chart(db.connection(), patient_id, now)
    return latest_values(build_flowsheet(full.vitals))


def _shown(db: ChartDatabase, patient_id: str, now: datetime) -> dict[str, tuple[str, datetime]]:
    summary = chart_loader.load_chart(db.connection(), patient_id, now, vitals=False)
    assert summary.vitals == ()
    return {v.row: (v.text.rsplit(" ", 1)[0], v.when) for v in summary.latest_vitals}


@pytest.fixture
def db(tmp_path: Path) -> ChartDatabase:
    database = ChartDatabase(tmp_path / "chart.db", os.urandom(32))
    yield database
    database.close()


def _store(db: ChartDatabase, items: list[dict[str, Any]]) -> None:
    apply_remote_page(db, as_changes(items), "cursor-1")


def test_synthea_charts_show_the_flowsheets_latest_values(db: ChartDatabase, shared_data) -> None:
    bundle, patients = synthea_resources(shared_data, 4)
    _store(db, bundle)
    checked = 0
    for patient in patients:
        mine = [r for r in bundle if r["resourceType"] == "Observation"
                and r.get("subject", {}).get("reference") == f"Patient/{patient.id}"]  # fmt: skip
        if not mine:
            continue
        # Synthea's 2019 data is older than the two-year window: look from just after it.
        newest = max(r["effectiveDateTime"] for r in mine if "effectiveDateTime" in r)
        now = datetime.fromisoformat(newest.replace("Z", "+00:00")) + timedelta(days=1)
        expected = _expected(db, patient.id, now)
        assert _shown(db, patient.id, now) == expected
        checked += bool(expected)
    assert checked >= 2  # real charts with vitals were compared


def _patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": "Test", "given": ["Ann"]}]}


def test_awkward_readings_match_the_flowsheet(db: ChartDatabase) -> None:
    pid, other = "c0ffee00-0000-4000-8000-000000000001", "c0ffee00-0000-4000-8000-000000000002"
    rng = random.Random(11)
    items: list[dict[str, Any]] = [_patient(pid), _patient(other)]
    for n in range(60):
        when = NOW - timedelta(hours=rng.randint(1, 24 * 900), seconds=rng.randint(0, 59))
        values = {k: float(rng.randint(lo, hi)) for k, lo, hi in (
            ("systolic", 100, 160), ("diastolic", 60, 95), ("heart_rate", 50, 110),
            ("spo2", 90, 99), ("weight", 60, 90), ("temperature", 36, 38))
            if rng.random() < 0.7}  # fmt: skip
        if ("systolic" in values) != ("diastolic" in values):  # the form takes both or none
            values.pop("systolic", None)
            values.pop("diastolic", None)
        if values:
            items += vitals_observations(pid, values, when)
        if n % 7 == 0:  # a second heart rate in (nearly always) the same minute
            items += vitals_observations(
                pid, {"heart_rate": 120.0 + n}, when + timedelta(seconds=1)
            )
    # The newest minute has a systolic only (no BP shown there), and SpO2 by the other code.
    lone = vitals_observations(
        pid, {"systolic": 150.0, "diastolic": 90.0}, NOW - timedelta(minutes=5)
    )
    for obs in lone:
        obs["component"] = [c for c in obs.get("component", []) if c["code"]["coding"][0]["code"]
                            == "8480-6"]  # fmt: skip
    spo2 = vitals_observations(pid, {"spo2": 91.0}, NOW - timedelta(minutes=3))
    spo2[0]["code"]["coding"][0]["code"] = "2708-6"
    _store(db, items + lone + spo2)
    expected = _expected(db, pid, NOW)
    assert expected["spo2"][0] == "91" and "bp" in expected
    assert expected["bp"][1] < (NOW - timedelta(minutes=5)).replace(second=0)
    assert _shown(db, pid, NOW) == expected
    assert _shown(db, other, NOW) == {}


def test_latest_vital_queries_are_bound_to_the_code_index(db: ChartDatabase) -> None:
    """`INDEXED BY`: without statistics SQLite would pick the (patient, vital, date) index
    and scan every vital sign of the patient; a dropped or renamed index fails loudly."""
    conn = db.connection()
    assert chart_queries.newest_vital(conn, "p", "8867-4", "2000") is None
    conn.execute("DROP INDEX observation_by_patient_code_date")
    with pytest.raises(Exception, match="no such index"):
        chart_queries.newest_vital(conn, "p", "8867-4", "2000")
    with pytest.raises(Exception, match="no such index"):
        chart_queries.newest_shared_minute(conn, "p", "8480-6", "8462-4", "2000")
