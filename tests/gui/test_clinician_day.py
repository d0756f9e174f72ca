"""A nurse's day on the real encrypted store, driven with clicks and keys.

Sign in (offline: the profile was enrolled by an earlier online sign-in), find a
patient, open the chart, record vitals wrong then right, add an allergy and mark
it entered in error, write and sign a note, add an addendum, lock and unlock.
Assertions are on what the widgets show AND on what the store holds.
"""

from __future__ import annotations

import base64

import orjson
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QAbstractItemModelTester, QTest
from PySide6.QtWidgets import QApplication

from desktop.ui.chart.chart_tab import ChartTab
from desktop.ui.main_window import MainWindow

pytestmark = pytest.mark.gui

USERNAME = "nurse.joy"  # enrolled by the `demo_profile` fixture

WAIT = 10_000


def click(qtbot, widget) -> None:
    qtbot.mouseClick(widget, Qt.MouseButton.LeftButton)


def keys(qtbot, widget, combo: str) -> None:
    """Press a shortcut like a user: on the focused widget of the active window."""
    modifiers = Qt.KeyboardModifier.NoModifier
    for mod in combo.split("+")[:-1]:
        modifiers |= {"Ctrl": Qt.KeyboardModifier.ControlModifier,
                      "Shift": Qt.KeyboardModifier.ShiftModifier,
                      "Alt": Qt.KeyboardModifier.AltModifier}[mod]  # fmt: skip
    name = combo.split("+")[-1]
    code = getattr(Qt.Key, f"Key_{name}")
    window = widget.window()
    if not window.isActiveWindow():  # e.g. just after a dialog closed
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(QApplication.focusWidget() or widget, code, modifiers)


@pytest.fixture
def window(qtbot, ui, show_active) -> MainWindow:
    main = MainWindow(ui)
    show_active(main)
    return main


def sign_in(qtbot, window: MainWindow, password: str) -> None:
    screen = window.signin
    qtbot.keyClicks(screen.username, USERNAME)
    qtbot.waitUntil(lambda: "offline" in screen.mode_label.text(), timeout=WAIT)
    assert "possible until" in screen.mode_label.text()
    qtbot.keyClicks(screen.password, password)
    qtbot.keyClick(screen.password, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.tabs, timeout=WAIT)


def open_patient(qtbot, window: MainWindow, patient) -> ChartTab:
    keys(qtbot, window, "Ctrl+F")
    search = window.home.search
    assert search.box.hasFocus()
    with qtbot.waitSignal(search.results_shown, timeout=WAIT):
        qtbot.keyClicks(search.box, f"{patient.family[:4]} {patient.given[:2]}")
    ids = [r.patient_id for r in search.model.records]
    assert patient.id in ids
    qtbot.keyClick(search.box, Qt.Key.Key_Down)
    row = ids.index(patient.id)
    search.view.selectRow(search.proxy.mapFromSource(search.model.index(row, 0)).row())
    qtbot.keyClick(search.view, Qt.Key.Key_Return)
    tab = window.tabs.currentWidget()
    assert isinstance(tab, ChartTab)
    qtbot.waitUntil(lambda: tab.chart is not None, timeout=WAIT)
    return tab


def test_wrong_password_is_explained(qtbot, window) -> None:
    screen = window.signin
    qtbot.keyClicks(screen.username, USERNAME)
    qtbot.keyClicks(screen.password, "not the password")
    click(qtbot, screen.sign_in_button)
    qtbot.waitUntil(lambda: screen.error_label.text() != "", timeout=WAIT)
    assert window.pages.currentWidget() is screen
    assert screen.password.text() == ""
    assert "not the password" not in screen.error_label.text()


def test_unknown_user_cannot_sign_in_offline(qtbot, window) -> None:
    screen = window.signin
    qtbot.keyClicks(screen.username, "someone.new")
    qtbot.waitUntil(lambda: "not possible" in screen.mode_label.text(), timeout=WAIT)


def test_search_open_chart_vitals_allergy_note(
    qtbot, window, workstation, fresh_profile, password
) -> None:
    sign_in(qtbot, window, password)
    QAbstractItemModelTester(window.home.search.model)
    QAbstractItemModelTester(window.home.schedule.model)
    qtbot.waitUntil(lambda: window.home.schedule.model.rowCount() == 5, timeout=WAIT)
    patient = fresh_profile.patients[0]
    tab = open_patient(qtbot, window, patient)

    # The banner: name, MRN, the allergy line.
    assert patient.family in tab.banner.name_label.text()
    assert patient.mrn in tab.banner.details_label.text()
    assert window.tabs.tabText(window.tabs.currentIndex()) == tab.title

    # Vitals: a wrong value is explained and nothing is saved; then a right one is saved.
    keys(qtbot, tab, "Alt+2")
    assert tab.current_section() is tab.vitals
    qtbot.waitUntil(lambda: tab.vitals.has_data, timeout=WAIT)  # readings load when first shown
    assert tab.vitals.form.save_button.isVisible()  # what the user sees, not only exists
    columns_before = tab.vitals.model.columnCount()
    form = tab.vitals.form
    qtbot.keyClicks(form.fields["systolic"], "128")
    qtbot.keyClicks(form.fields["diastolic"], "84")
    qtbot.keyClicks(form.fields["spo2"], "197")
    click(qtbot, form.save_button)
    assert "cannot be above 100" in form.problems_label.text()
    assert workstation.list_pending_changes() == []
    form.fields["spo2"].clear()
    qtbot.keyClicks(form.fields["spo2"], "97")
    click(qtbot, form.save_button)
    qtbot.waitUntil(lambda: tab.vitals.model.columnCount() == columns_before + 1, timeout=WAIT)
    assert "saved on this computer" in form.problems_label.text()
    newest = tab.vitals.model.column_at(0)
    assert newest.pending and newest.text("bp") == "128/84" and newest.text("spo2") == "97"
    pending = workstation.list_pending_changes()
    assert {e.resource_type for e in pending} == {"Observation"} and len(pending) == 2

    # Allergy: add, then mark entered in error with a reason (never deleted).
    keys(qtbot, tab, "Alt+4")
    assert tab.current_section() is tab.allergies
    panel = tab.allergies
    qtbot.keyClicks(panel.substance, "Penicillin")
    qtbot.keyClicks(panel.reaction, "Hives")
    click(qtbot, panel.add_button)
    qtbot.waitUntil(lambda: "Penicillin" in tab.banner.allergies_label.text(), timeout=WAIT)
    assert tab.banner.allergies_label.property("hasAllergies") is True
    row = [a.substance for a in panel.model.records].index("Penicillin")
    panel.view.selectRow(row)
    click(qtbot, panel.error_button)
    dialog = panel.reason_dialog
    assert not dialog.ok_button.isEnabled()  # a reason is required
    qtbot.keyClicks(dialog.reason_edit, "Wrong patient selected")
    click(qtbot, dialog.ok_button)
    qtbot.waitUntil(
        lambda: "Penicillin" not in [a.substance for a in panel.model.records], timeout=WAIT
    )
    assert "Penicillin" not in tab.banner.allergies_label.text()
    allergy_id = next(
        e.id for e in workstation.list_pending_changes() if e.resource_type == "AllergyIntolerance"
    )
    stored, _version = workstation.get_resource("AllergyIntolerance", allergy_id)
    assert stored["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert "Wrong patient selected" in stored["note"][0]["text"]

    # Note: write from the SOAP template, sign it, then add an addendum.
    keys(qtbot, tab, "Alt+6")
    assert tab.current_section() is tab.notes
    assert tab.notes.new_button.isVisible()
    notes = tab.notes
    notes.template_box.setCurrentIndex([t.key for t in notes.templates].index("soap_progress_note"))
    click(qtbot, notes.new_button)
    assert "Subjective" in notes.editor.toPlainText()
    qtbot.keyClicks(notes.editor, "Feels well. BP controlled.")
    keys(qtbot, notes, "Ctrl+S")
    qtbot.waitUntil(lambda: "Draft saved" in notes.save_state.text(), timeout=WAIT)
    draft_id = notes.draft_id
    draft, _ = workstation.get_resource("DocumentReference", draft_id)
    assert draft["docStatus"] == "preliminary"
    click(qtbot, notes.sign_button)
    qtbot.waitUntil(
        lambda: [n.status for n in notes.model.records if n.id == draft_id] == ["final"],
        timeout=WAIT,
    )
    signed, _ = workstation.get_resource("DocumentReference", draft_id)
    assert signed["docStatus"] == "final"
    assert (
        "Feels well. BP controlled."
        in base64.b64decode(signed["content"][0]["attachment"]["data"]).decode()
    )
    row = [n.id for n in notes.model.records].index(draft_id)
    assert notes.model.records[row].status == "final"
    notes.open_note(notes.model.records[row])
    qtbot.waitUntil(lambda: notes.addendum_button.isVisible(), timeout=WAIT)
    assert "Feels well" in notes.reader_text.toPlainText()
    assert notes.reader_text.isReadOnly()
    assert not notes.continue_button.isVisible()  # a signed note cannot be edited
    click(qtbot, notes.addendum_button)
    qtbot.keyClicks(notes.editor, "Potassium result reviewed: normal.")
    count = notes.model.rowCount()
    click(qtbot, notes.sign_button)
    qtbot.waitUntil(lambda: notes.model.rowCount() == count + 1, timeout=WAIT)
    addenda = [
        orjson.loads(e.json)
        for e in workstation.list_pending_changes()
        if e.resource_type == "DocumentReference" and e.json
    ]
    addendum = next(a for a in addenda if a.get("relatesTo"))
    assert addendum["relatesTo"][0]["target"]["reference"] == f"DocumentReference/{draft_id}"
    assert addendum["docStatus"] == "final"
    original, _ = workstation.get_resource("DocumentReference", draft_id)
    assert original == signed  # the signed note itself is unchanged

    # Status bar counts what waits for the server.
    window.status.refresh()
    qtbot.waitUntil(lambda: "waiting to sync" in window.status.pending.text(), timeout=WAIT)


def test_two_charts_never_mix_and_ctrl_w_closes(qtbot, window, fresh_profile, password) -> None:
    sign_in(qtbot, window, password)
    first, second = fresh_profile.patients[:2]
    tab1 = open_patient(qtbot, window, first)
    tab2 = open_patient(qtbot, window, second)
    assert window.tabs.count() == 3
    assert tab1.chart.banner.patient_id == first.id and tab2.chart.banner.patient_id == second.id
    assert first.family in tab1.banner.name_label.text()
    assert second.family in tab2.banner.name_label.text()
    assert window.tabs.currentWidget() is tab2
    keys(qtbot, window, "Ctrl+W")
    assert window.tabs.count() == 2 and window.tabs.currentWidget() is tab1
    assert open_patient(qtbot, window, first) is tab1  # re-opening switches, not duplicates


def test_lock_hides_charts_until_password(
    qtbot, window, workstation, fresh_profile, password
) -> None:
    sign_in(qtbot, window, password)
    open_patient(qtbot, window, fresh_profile.patients[0])
    keys(qtbot, window, "Ctrl+L")
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.lock_screen, timeout=WAIT)
    assert workstation.is_locked
    assert USERNAME in window.lock_screen.whose.text()
    qtbot.keyClicks(window.lock_screen.password, "wrong")
    qtbot.keyClick(window.lock_screen.password, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.lock_screen.error.text() != "", timeout=WAIT)
    assert workstation.is_locked
    qtbot.keyClicks(window.lock_screen.password, password)
    qtbot.keyClick(window.lock_screen.password, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.pages.currentWidget() is window.tabs, timeout=WAIT)
    assert not workstation.is_locked


def test_idle_session_locks_itself(qtbot, tmp_path, gui_keychain, password, show_active) -> None:
    from desktop_store_helpers import FAST_KDF, enroll

    from desktop.services.workstation import Workstation
    from desktop.ui.context import UiContext

    enroll(tmp_path / "idle", USERNAME, idle_minutes=0)  # the policy: lock at once when idle
    ws = Workstation.open(tmp_path / "idle", None, kdf=FAST_KDF)
    ctx = UiContext.create(ws)
    main = MainWindow(ctx)
    try:
        show_active(main)
        sign_in(qtbot, main, password)
        assert main.idle_timer.isActive()
        main.idle_timer.timeout.emit()  # what the timer does every 20 s
        qtbot.waitUntil(lambda: main.pages.currentWidget() is main.lock_screen, timeout=WAIT)
        assert "without activity" in main.lock_screen.whose.text()
        assert ws.is_locked
    finally:
        main.close()
        ctx.shutdown()
        ws.close()


def test_typing_counts_as_activity(qtbot, window, workstation, password) -> None:
    sign_in(qtbot, window, password)
    window._last_touch = 0.0  # as if the last report was long ago
    qtbot.wait(1200)
    assert workstation._session.idle_seconds() >= 1.0
    # Through the QWindow, as the platform delivers a real key press.
    QTest.keyClick(window.windowHandle(), Qt.Key.Key_X)
    qtbot.waitUntil(lambda: workstation._session.idle_seconds() < 1.0, timeout=WAIT)
