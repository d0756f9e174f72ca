"""The day view of a location painted from the local encrypted cache.

Cache: 3 locations, 30 practitioners, a year of weekday slots (08:00-12:00,
20 minutes) and, on the measured days, half of each practitioner's slots
booked for Synthea patients. Figure: p50/p95 from choosing a day to the
painted day table (store query on the store thread, model reset, paint), and
the headless `Workstation.scheduling.day` call alone. Raw limit beside them:
the bare SQLite index query that finds the day's slots. Printed, never asserted.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QDate

TESTS = Path(__file__).resolve().parent.parent
for folder in ("server", "desktop", "scheduling"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))

from desktop_store_helpers import FAST_KDF, PASSWORD, enroll, synthea_resources  # noqa: E402
from scheduling_support import local_clinic, module_keychain  # noqa: E402, F401 - fixture

from desktop.services.workstation import Workstation  # noqa: E402
from desktop.ui.context import UiContext  # noqa: E402
from desktop.ui.schedule.page import SchedulePage  # noqa: E402

pytestmark = [pytest.mark.benchmark, pytest.mark.gui, pytest.mark.timeout(1800)]

SITES = ("America/New_York", "America/Chicago", "America/Denver")
MEASURED_DAYS = 20


def _booked(patient: str, slot: dict[str, Any], practitioner: str, location: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": str(uuid.uuid4()),
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "start": slot["start"],
        "end": slot["end"],
        "participant": [
            {"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{practitioner}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{location}"}, "status": "accepted"},
        ],
    }


def test_location_day_view_painted_from_cache(
    qtbot: Any,
    shared_data: Path,
    tmp_path: Path,
    module_keychain: Path,  # noqa: F811
) -> None:
    first = date.today()
    patients_resources, patients = synthea_resources(shared_data, 3)
    resources: list[dict[str, Any]] = list(patients_resources)
    measured = {first + timedelta(days=n) for n in range(MEASURED_DAYS)}
    slot_count = 0
    for n, zone in enumerate(SITES):
        location = f"site-{n}"
        clinic, people = local_clinic(
            shared_data, first, days=365, practitioners=10, first_practitioner=10 * n,
            weekdays=frozenset(range(1, 6)), zone=zone, location_id=location,
        )  # fmt: skip
        for resource in clinic:
            if resource["resourceType"] == "Slot":
                slot_count += 1
                start = datetime.fromisoformat(resource["start"])
                if start.date() in measured and start.minute in (0, 40):
                    resource["status"] = "busy"
                    owner = next(p for p in people if p[:8] in resource["schedule"]["reference"])
                    patient = patients[slot_count % len(patients)].id
                    resources.append(_booked(patient, resource, owner, location))
            resources.append(resource)
    profile = tmp_path / "profile"
    began = time.perf_counter()
    enroll(profile, "desk.bench", resources=resources)
    loaded = time.perf_counter() - began

    ws = Workstation.open(profile, None, kdf=FAST_KDF)
    ws.sign_in_offline("desk.bench", PASSWORD)
    ctx = UiContext.create(ws)
    try:
        headless: list[float] = []
        for day in sorted(measured):
            t0 = time.perf_counter()
            ws.scheduling.day(day, location_id="site-1")
            headless.append((time.perf_counter() - t0) * 1000)
        conn = ws._db().connection()
        schedules = [r[0] for r in conn.execute(
            "SELECT id FROM resources WHERE resource_type = 'Schedule' AND json LIKE ?",
            ("%Location/site-1%",))]  # fmt: skip
        raw: list[float] = []
        marks = ",".join("?" * len(schedules))
        for day in sorted(measured):
            t0 = time.perf_counter()
            conn.execute(
                "SELECT i.slot_id, r.json FROM slot_index i CROSS JOIN resources r"
                " ON r.resource_type = 'Slot' AND r.id = i.slot_id"
                f" WHERE i.schedule_id IN ({marks})"
                " AND i.start >= ? AND i.start < ?",
                (*schedules, f"{day}T00:00:00Z", f"{day + timedelta(days=1)}T00:00:00Z"),
            ).fetchall()
            raw.append((time.perf_counter() - t0) * 1000)

        page = SchedulePage(ctx)
        qtbot.addWidget(page)
        page.resize(1100, 700)
        page.show()
        qtbot.waitExposed(page)
        with qtbot.waitSignal(page.refreshed, timeout=30_000):
            page.load_scopes()
        page.scope_box.setCurrentIndex(
            next(i for i, s in enumerate(page.scopes) if s.location_id == "site-1")
        )
        qtbot.waitUntil(lambda: getattr(page.scope(), "location_id", None) == "site-1")
        painted: list[float] = []
        rows = 0
        for day in sorted(measured):
            t0 = time.perf_counter()
            with qtbot.waitSignal(page.refreshed, timeout=30_000):
                page.date_edit.setDate(QDate(day.year, day.month, day.day))
            page.day_view.viewport().repaint()
            painted.append((time.perf_counter() - t0) * 1000)
            rows = max(rows, page.day_model.rowCount())
    finally:
        ctx.shutdown()
        ws.close()

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[18]

    print(
        f"\nday view of a location: cache of {slot_count} slots, 3 locations, 30 practitioners,"
        f" {len(resources)} resources (loaded in {loaded:.0f} s); {rows} rows a day"
        f"\n  painted: p50 {statistics.median(painted):.1f} ms, p95 {p95(painted):.1f} ms"
        f"\n  headless scheduling.day: p50 {statistics.median(headless):.1f} ms,"
        f" p95 {p95(headless):.1f} ms"
        f"\n  raw limit: the slot index query alone p50 {statistics.median(raw):.2f} ms,"
        f" p95 {p95(raw):.2f} ms"
    )
