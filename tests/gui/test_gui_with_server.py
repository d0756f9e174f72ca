"""The GUI against a real server on 127.0.0.1: online sign-in, initial download, sync,
working through an outage, and resolving a conflict made by a second workstation.

Real PostgreSQL (the session cluster), the real FastAPI app under uvicorn, real
sign-in with a TOTP code, the real SQLCipher profiles. The server is stopped and
started again on the same port to take the workstation offline.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))
from desktop_live_server import ClinicServer
from desktop_store_helpers import FAST_KDF
from PySide6.QtCore import Qt
from sqlalchemy.orm import Session
from sync_support import seed_clinic

from desktop.services.workstation import Workstation
from desktop.ui.chart.chart_tab import ChartTab
from desktop.ui.context import UiContext
from desktop.ui.main_window import MainWindow
from shared_models.errors import NotFound
from sync_server.app import create_app
from sync_server.config import Settings
from sync_server.db.engine import make_engine, migrate
from sync_server.services.context import RequestContext
from sync_server.services.fhir_repository import FhirRepository
from sync_server.services.system_access import SystemAudit, SystemGuard

pytestmark = pytest.mark.gui

WAIT = 30_000


class RestartableServer:
    """uvicorn on a fixed port in a thread, stoppable and startable again."""

    def __init__(self, app: object) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.app = app
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            assert time.monotonic() < deadline and self._thread.is_alive(), "server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def clinic(create_database, tmp_path_factory, shared_data, gui_keychain) -> Iterator[ClinicServer]:
    engine = make_engine(create_database())
    migrate(engine)
    data_dir = tmp_path_factory.mktemp("server-data")
    app = create_app(Settings(database_url=None, data_dir=data_dir, demo_mode=False), engine)
    server = RestartableServer(app)
    server.start()
    clinic = ClinicServer(server.url, app, engine)
    clinic.restartable = server  # type: ignore[attr-defined]
    seeded = seed_clinic(engine, shared_data)  # 2 bulk-export patients at loc-main
    clinic.seeded = seeded  # type: ignore[attr-defined]
    yield clinic
    server.stop()
    engine.dispose()


def server_resource(clinic: ClinicServer, resource_type: str, resource_id: str) -> dict:
    with Session(clinic.engine) as session:
        repo = FhirRepository(
            session, RequestContext.for_system("tests"), SystemGuard(), SystemAudit()
        )
        return repo.read(resource_type, resource_id).resource()


def click(qtbot, widget) -> None:
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def sync_and_wait(qtbot, window: MainWindow) -> bool:
    """Press F5 like a user (in the active main window) and wait for the sync to end."""
    if not window.isActiveWindow():
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow)
    qtbot.waitUntil(lambda: not window.status.syncing, timeout=WAIT)
    with qtbot.waitSignal(window.status.sync_finished, timeout=WAIT) as done:
        qtbot.keyClick(window.focusWidget() or window, Qt.Key.Key_F5)
    return bool(done.args[0])


def test_online_day_outage_and_conflict(
    qtbot, clinic: ClinicServer, tmp_path: Path, show_active
) -> None:
    # Physicians: a nurse may not prescribe (the server refuses a MedicationRequest from one).
    nurse = clinic.add_user("dr.exam.room", ["physician"])
    doctor = clinic.add_user("dr.second", ["physician"])
    ws = Workstation.open(tmp_path / "nurse", clinic.url, kdf=FAST_KDF)
    ctx = UiContext.create(ws)
    window = MainWindow(ctx)
    show_active(window)
    try:
        # Online sign-in with the code; the first sign-in downloads the charts.
        screen = window.signin
        qtbot.keyClicks(screen.username, nurse.username)
        qtbot.keyClicks(screen.password, nurse.password)
        qtbot.keyClicks(screen.otp, nurse.next_code())
        assert "online" in screen.mode_label.text()
        click(qtbot, screen.sign_in_button)
        qtbot.waitUntil(lambda: hasattr(window, "download"), timeout=WAIT)
        with qtbot.waitSignal(window.download.finished_download, timeout=WAIT) as downloaded:
            pass
        assert downloaded.args == [True]
        assert window.status.connection.property("online") == "true"

        # Find a downloaded patient by name and open the chart from the keyboard.
        search = window.home.search
        search.focus_search()
        first = clinic.seeded.resources[("Patient", clinic.seeded.patients[0])]  # type: ignore[attr-defined]
        family = first["name"][0]["family"]
        with qtbot.waitSignal(search.results_shown, timeout=WAIT):
            qtbot.keyClicks(search.box, family[:5])
        assert first["id"] in [r.patient_id for r in search.model.records]
        row = [r.patient_id for r in search.model.records].index(first["id"])
        search.view.selectRow(search.proxy.mapFromSource(search.model.index(row, 0)).row())
        qtbot.keyClick(search.view, Qt.Key.Key_Return)
        tab = window.tabs.currentWidget()
        assert isinstance(tab, ChartTab)
        qtbot.waitUntil(lambda: tab.chart is not None, timeout=WAIT)
        assert family in tab.banner.name_label.text()

        # Record vitals and add a medication, then sync: the server holds them.
        tab.show_section("Vitals")
        form = tab.vitals.form
        qtbot.keyClicks(form.fields["heart_rate"], "250x")
        click(qtbot, form.save_button)
        assert "type a number" in form.problems_label.text()
        form.fields["heart_rate"].clear()
        qtbot.keyClicks(form.fields["heart_rate"], "72")
        click(qtbot, form.save_button)
        qtbot.waitUntil(
            lambda: "saved on this computer" in form.problems_label.text(), timeout=WAIT
        )
        tab.show_section("Medications")
        meds = tab.medications
        qtbot.keyClicks(meds.medication, "Lisinopril 10 mg tablet")
        qtbot.keyClicks(meds.dosage, "1 tablet daily")
        click(qtbot, meds.add_button)
        qtbot.waitUntil(lambda: "Lisinopril 10 mg tablet" in [m.text for m in meds.model.records],
                        timeout=WAIT)  # fmt: skip
        med_id = next(m.id for m in meds.model.records if m.text.startswith("Lisinopril"))
        assert sync_and_wait(qtbot, window)
        assert ws.list_pending_changes() == []
        on_server = server_resource(clinic, "MedicationRequest", med_id)
        assert on_server["dosageInstruction"][0]["text"] == "1 tablet daily"
        qtbot.waitUntil(lambda: "No changes waiting" in window.status.pending.text(), timeout=WAIT)

        # The server goes away: the nurse keeps working, sync says offline, nothing is lost.
        clinic.restartable.stop()  # type: ignore[attr-defined]
        tab.show_section("Problems")
        qtbot.keyClicks(tab.problems.problem, "Essential hypertension")
        click(qtbot, tab.problems.add_button)
        qtbot.waitUntil(lambda: "Essential hypertension" in
                        [p.text for p in tab.problems.model.records], timeout=WAIT)  # fmt: skip
        assert not sync_and_wait(qtbot, window)
        assert "Offline" in window.status.connection.text()
        assert len(ws.list_pending_changes()) == 1

        # Meanwhile a second workstation (a physician) puts the medication on hold.
        clinic.restartable.start()  # type: ignore[attr-defined]
        other = Workstation.open(tmp_path / "doctor", clinic.url, kdf=FAST_KDF)
        try:
            other.sign_in_online(doctor.username, doctor.password, doctor.next_code())
            other.sync()
            med, version = other.get_resource("MedicationRequest", med_id)
            other.save_resource(med | {"status": "on-hold"}, version)
            other.sync()
        finally:
            other.close()

        # The nurse, not yet synced, discontinues it: the two edits collide.
        tab.show_section("Medications")
        row = [m.id for m in meds.model.records].index(med_id)
        meds.view.selectRow(row)
        click(qtbot, meds.stop_button)
        qtbot.keyClicks(meds.reason_dialog.reason_edit, "Cough, switching to losartan")
        click(
            qtbot, meds.reason_dialog.buttons.button(meds.reason_dialog.buttons.StandardButton.Ok)
        )
        qtbot.waitUntil(lambda: med_id not in [m.id for m in meds.model.records], timeout=WAIT)
        sync_and_wait(qtbot, window)
        assert server_resource(clinic, "Condition", _problem_id(ws, tab))["code"]["text"] == (
            "Essential hypertension"
        )
        worklist = window.home.worklist
        worklist.refresh()
        qtbot.waitUntil(lambda: any(i.kind == "conflict" for i in worklist.model.records),
                        timeout=WAIT)  # fmt: skip
        assert "Conflicts: 1" in window.status.conflicts.text()

        # Review: the status differs on both sides; keep mine, sync, the server agrees.
        conflict = next(i for i in worklist.model.records if i.kind == "conflict")
        worklist.open_review(conflict.conflict_id)
        qtbot.waitUntil(lambda: worklist.review is not None, timeout=WAIT)
        review = worklist.review
        labels = [d.label for d in review.model.diffs]
        assert "Status" in labels
        assert "on-hold" in [d.theirs for d in review.model.diffs]
        assert "stopped" in [d.mine for d in review.model.diffs]
        click(qtbot, review.mine_button)
        qtbot.waitUntil(lambda: not review.isVisible(), timeout=WAIT)
        assert sync_and_wait(qtbot, window)
        final = server_resource(clinic, "MedicationRequest", med_id)
        assert final["status"] == "stopped"
        assert final["statusReason"]["text"] == "Cough, switching to losartan"
        assert ws.list_conflicts() == []

        # Break the glass for a patient cared for at the satellite only: reason first.
        outsider = clinic.seeded.patients[2]  # type: ignore[attr-defined]
        with pytest.raises(NotFound):  # not downloaded: cared for at another site
            ws.get_resource("Patient", outsider)
        charts_before = len(window.chart_tabs())
        window.break_glass()
        dialog = window.break_glass_dialog
        assert "This access is recorded" in dialog.notice.text()
        qtbot.keyClicks(dialog.patient, outsider)
        qtbot.keyClicks(dialog.reason, "ED")
        assert not dialog.open_button.isEnabled()  # a real reason is required
        qtbot.keyClicks(dialog.reason, " transfer, seizure")
        click(qtbot, dialog.open_button)
        qtbot.waitUntil(lambda: len(window.chart_tabs()) == charts_before + 1, timeout=WAIT)
        glass_tab = window.tabs.currentWidget()
        qtbot.waitUntil(lambda: glass_tab.chart is not None, timeout=WAIT)
        assert glass_tab.chart.banner.patient_id == outsider
    finally:
        window.close()
        ctx.shutdown()
        ws.close()


def _problem_id(ws: Workstation, tab: ChartTab) -> str:
    return next(p.id for p in tab.problems.model.records if p.text == "Essential hypertension")
