"""Render every main screen with demo data and save it as PNG.

The demo profile is the real encrypted store holding Synthea patients, two years
of vitals and today's clinic; a conflict is recorded the way the sync engine
records one. Each screen is checked for what it must show, then saved: to the
test's temporary folder, or with `UPDATE_SCREENSHOTS=1` to docs/screenshots/
(the pictures in the README), so an ordinary test run leaves the tree clean.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import orjson
import pyotp
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from desktop.app import load_style_sheet
from desktop.services.demo_accounts import DemoAccount
from desktop.store import conflicts
from desktop.ui.break_glass import BreakGlassDialog
from desktop.ui.chart.chart_tab import ChartTab
from desktop.ui.conflict_review import ConflictReviewDialog
from desktop.ui.main_window import MainWindow

pytestmark = pytest.mark.gui

DOCS_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WAIT = 10_000
_shots: list[Path] = []  # where `save` writes, set per module by `shots_dir`


@pytest.fixture(scope="module", autouse=True)
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = (
        DOCS_SHOTS
        if os.environ.get("UPDATE_SCREENSHOTS") == "1"
        else (tmp_path_factory.mktemp("screenshots"))
    )
    _shots[:] = [folder]
    return folder


def save(widget, name: str) -> Path:
    folder = _shots[0]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    assert widget.grab().save(str(path))
    assert path.stat().st_size > 10_000
    return path


def medication(patient_id: str, med_id: str, dose: str, frequency: int, version: int) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": med_id,
        "meta": {"versionId": str(version), "lastUpdated": "2026-11-28T10:42:00+00:00"},
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Metformin 500 mg tablet"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "dosageInstruction": [
            {
                "text": dose,
                "timing": {"repeat": {"frequency": frequency, "period": 1, "periodUnit": "d"}},
            }
        ],
    }


def record_conflict(workstation, patient_id: str) -> str:
    med_id, conflict_id = str(uuid.uuid4()), str(uuid.uuid4())
    base = medication(patient_id, med_id, "1 tablet with breakfast", 1, 3)
    mine = medication(patient_id, med_id, "2 tablets with breakfast", 1, 3)
    theirs = medication(patient_id, med_id, "1 tablet with breakfast", 2, 4)
    db = workstation._session.require_db()  # the sync engine's way in: the store API
    with db.transaction() as conn:
        conflicts.record(
            conn, conflict_id=conflict_id, resource_type="MedicationRequest",
            resource_id=med_id, patient_id=patient_id, status="conflict",
            reason="Dr. Amal Haddad changed the same medication on the server.",
            server_version=4, server_json=orjson.dumps(theirs),
            local_json=orjson.dumps(mine), base_json=orjson.dumps(base),
        )  # fmt: skip
    return conflict_id


def test_every_main_screen(qtbot, ui, workstation, fresh_profile, password, show_active) -> None:
    QApplication.instance().setStyleSheet(load_style_sheet())
    window = MainWindow(ui)
    window.resize(1360, 860)
    show_active(window)
    # As `ehr-server demo` opens it: the demo clinic's accounts below the sign-in card.
    demo_users = [("demo.physician", "physician"), ("demo.nurse", "nurse"),
                  ("demo.frontdesk", "front_desk")]  # fmt: skip
    window.signin.show_demo_accounts(
        [DemoAccount(u, (r,), "Riverside-Demo-2026!", pyotp.random_base32()) for u, r in demo_users]
    )

    qtbot.keyClicks(window.signin.username, "nurse.joy")
    qtbot.waitUntil(lambda: "offline" in window.signin.mode_label.text(), timeout=WAIT)
    assert window.signin.demo_panel is not None and window.signin.demo_panel.isVisible()
    save(window, "01-sign-in")
    qtbot.keyClicks(window.signin.password, password)
    qtbot.keyClick(window.signin.password, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.tabs, timeout=WAIT)

    patient = max(fresh_profile.patients, key=lambda p: p.birth_date)  # a living one
    record_conflict(workstation, patient.id)
    window.home.worklist.refresh()
    qtbot.waitUntil(lambda: window.home.schedule.model.rowCount() == 5, timeout=WAIT)
    qtbot.waitUntil(lambda: window.home.worklist.model.rowCount() == 1, timeout=WAIT)
    search = window.home.search
    with qtbot.waitSignal(search.results_shown, timeout=WAIT):
        qtbot.keyClicks(search.box, patient.family[:3])
    window.status.refresh()
    qtbot.waitUntil(lambda: "Conflicts: 1" in window.status.conflicts.text(), timeout=WAIT)
    save(window, "02-home-search-schedule-worklist")

    tab = window.open_chart(patient.id)
    qtbot.waitUntil(lambda: tab.chart is not None, timeout=WAIT)
    assert isinstance(tab, ChartTab)
    qtbot.waitUntil(lambda: tab.summary.models["vitals"].rowCount() >= 5, timeout=WAIT)
    save(window, "03-chart-summary")

    tab.show_section("Vitals")
    qtbot.waitUntil(lambda: tab.vitals.has_data, timeout=WAIT)  # readings load when first shown
    form = tab.vitals.form
    qtbot.keyClicks(form.fields["systolic"], "80")
    qtbot.keyClicks(form.fields["diastolic"], "120")
    qtbot.keyClicks(form.fields["temperature"], "98.6")
    qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    assert "°F" in form.problems_label.text()
    assert all(c.point_count > 5 and c.isVisible() for c in tab.vitals.charts.values())
    save(window, "04-chart-vitals-flowsheet-trends-entry")

    tab.show_section("Allergies")
    qtbot.keyClicks(tab.allergies.substance, "Penicillin")
    qtbot.keyClicks(tab.allergies.reaction, "Hives")
    qtbot.mouseClick(tab.allergies.add_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "Penicillin" in tab.banner.allergies_label.text(), timeout=WAIT)
    save(window, "05-chart-allergies-banner-red")

    tab.show_section("Medications")
    qtbot.waitUntil(lambda: tab.medications.model.rowCount() >= 0, timeout=WAIT)
    save(window, "06-chart-medications")

    tab.show_section("Notes")
    qtbot.mouseClick(tab.notes.new_button, Qt.MouseButton.LeftButton)
    qtbot.keyClicks(tab.notes.editor, "Feels well today. ")
    save(window, "07-chart-note-editor")

    review = ConflictReviewDialog(ui, workstation.list_conflicts()[0], window)
    qtbot.addWidget(review)
    review.show()
    assert "dosage instruction" in review.explanation.text().lower()
    assert "frequency" in review.explanation.text().lower()
    save(review, "08-conflict-review")
    review.close()

    glass = BreakGlassDialog(ui, window)
    qtbot.addWidget(glass)
    glass.show()
    save(glass, "09-break-the-glass")
    glass.close()

    window.lock()
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.lock_screen, timeout=WAIT)
    save(window, "10-lock-screen")
