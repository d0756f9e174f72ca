"""Opening a chart paints the summary once, with the latest vitals but without loading the
readings; the readings load when the Vitals section is first shown (real encrypted store)."""

from __future__ import annotations

import pytest
from PySide6.QtTest import QAbstractItemModelTester

from desktop.services.vitals import ROW_UNITS, build_flowsheet, latest_values
from desktop.ui.main_window import MainWindow

pytestmark = pytest.mark.gui

WAIT = 10_000


def test_summary_first_then_the_readings_with_the_vitals_section(
    qtbot, ui, workstation, fresh_profile, password, show_active
) -> None:
    result = workstation.sign_in_offline("nurse.joy", password)
    ui.user = result.user
    patient = fresh_profile.patients[0]
    full = workstation.load_chart(patient.id)
    assert len(full.vitals) > 20  # the demo profile's recent readings
    window = MainWindow(ui)
    show_active(window)
    window._signed_in(result)  # what the sign-in screen does after a successful sign-in

    tab = window.open_chart(patient.id)
    assert tab.sections.isHidden() and tab.banner.isHidden()  # nothing half-filled is painted
    with qtbot.waitSignal(tab.loaded, timeout=WAIT):
        pass
    assert tab.sections.isVisible() and tab.banner.isVisible() and tab.summary.isVisible()
    assert tab.chart is not None and tab.chart.vitals == ()  # the readings were not loaded
    QAbstractItemModelTester(tab.summary.models["vitals"])
    shown = {v.row: (v.text, v.when) for v in tab.summary.models["vitals"].records}
    expected = latest_values(build_flowsheet(full.vitals))
    assert shown == {
        row: (f"{text} {ROW_UNITS[row]}", when) for row, (text, when) in expected.items()
    }
    assert {"bp", "heart_rate", "spo2"} <= set(shown)

    with qtbot.waitSignal(tab.loaded, timeout=WAIT):
        vitals = tab.show_section("Vitals")
        assert not vitals.has_data and vitals.loading_label.isVisible()
    assert vitals.has_data and not vitals.loading_label.isVisible()
    assert len(tab.chart.vitals) == len(full.vitals)
    columns = [vitals.model.column_at(i) for i in range(vitals.model.columnCount())]
    assert columns == build_flowsheet(full.vitals)
    assert all(chart.point_count > 5 for chart in vitals.charts.values())
