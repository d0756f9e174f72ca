"""Vitals entry form, flowsheet model and trend chart, driven like a nurse would."""

from __future__ import annotations

from datetime import datetime

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtTest import QAbstractItemModelTester

from desktop.services.vitals import FLOWSHEET_ROWS, build_flowsheet, trend_series
from desktop.ui.chart.flowsheet import VitalsFlowsheetModel
from desktop.ui.chart.trend_chart import SERIES_COLOURS, Series, TrendChart
from desktop.ui.chart.vitals_entry import VitalsEntryForm

pytestmark = pytest.mark.gui


def test_wrong_then_right_vitals(qtbot, show_active) -> None:
    form = VitalsEntryForm()
    show_active(form)
    submitted: list[tuple[dict, datetime]] = []
    form.submitted.connect(lambda v, w: submitted.append((v, w)))

    qtbot.keyClicks(form.fields["systolic"], "80")
    qtbot.keyClicks(form.fields["diastolic"], "120")
    qtbot.keyClicks(form.fields["spo2"], "160")
    qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    assert submitted == []
    assert form.problems_label.isVisible()
    assert "cannot be above 100" in form.problems_label.text()
    assert "swapped" in form.problems_label.text()  # every problem at once
    assert form.fields["spo2"].property("invalid") is True
    assert form.fields["systolic"].property("invalid") is True
    assert form.fields["heart_rate"].property("invalid") is not True
    assert form.fields["systolic"].hasFocus()  # the first bad field, in form order

    form.fields["spo2"].clear()
    qtbot.keyClicks(form.fields["spo2"], "97")
    qtbot.mouseClick(form.save_button, Qt.MouseButton.LeftButton)
    assert submitted == []
    assert "swapped" in form.problems_label.text()
    assert "100" not in form.problems_label.text()
    assert form.fields["spo2"].property("invalid") is False

    for key, text in (("systolic", "128"), ("diastolic", "82")):
        form.fields[key].clear()
        qtbot.keyClicks(form.fields[key], text)
    qtbot.keyClick(form.fields["diastolic"], Qt.Key.Key_Return)
    assert len(submitted) == 1
    values, when = submitted[0]
    assert values["systolic"] == 128 and values["diastolic"] == 82 and values["spo2"] == 97
    assert values["weight"] is None
    assert when.tzinfo is not None
    assert not form.problems_label.isVisible()


def test_ctrl_s_saves_and_garbage_is_explained(qtbot, show_active) -> None:
    form = VitalsEntryForm()
    show_active(form)
    submitted: list[dict] = []
    form.submitted.connect(lambda v, _w: submitted.append(v))
    form.fields["heart_rate"].setFocus()
    qtbot.keyClicks(form.fields["heart_rate"], "seventy")
    qtbot.keyClick(form.fields["heart_rate"], Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert submitted == []
    assert "type a number" in form.problems_label.text()
    form.fields["heart_rate"].clear()
    qtbot.keyClicks(form.fields["heart_rate"], "70")
    qtbot.keyClick(form.fields["heart_rate"], Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert submitted and submitted[0]["heart_rate"] == 70


def test_flowsheet_model_from_synthea(qtbot, readings) -> None:
    columns = build_flowsheet(readings)
    model = VitalsFlowsheetModel()
    QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Fatal)
    model.set_columns(columns)
    assert model.rowCount() == len(FLOWSHEET_ROWS)
    assert model.columnCount() == len(columns) > 10
    # Newest first, and the BP row shows both numbers of a panel.
    assert columns[0].when >= columns[-1].when
    bp_row = FLOWSHEET_ROWS.index("bp")
    bp_texts = [model.index(bp_row, c).data() for c in range(model.columnCount())]
    assert any("/" in t for t in bp_texts)
    for text in filter(None, bp_texts):
        sys_bp, dia_bp = map(float, text.split("/"))
        assert sys_bp > dia_bp
    header = model.headerData(0, Qt.Orientation.Horizontal)
    assert columns[0].when.strftime("%Y") in header


def test_trend_chart_paints_the_series(qtbot, readings) -> None:
    columns = build_flowsheet(readings)
    chart = TrendChart("Blood pressure", "mmHg")
    qtbot.addWidget(chart)
    chart.resize(600, 260)
    chart.set_series(
        [Series("Systolic", trend_series(columns, "systolic")),
         Series("Diastolic", trend_series(columns, "diastolic"))]
    )  # fmt: skip
    assert chart.point_count > 10
    image = chart.grab().toImage()
    colours = {QColor(image.pixel(x, y)).name() for x in range(0, 600, 2) for y in range(0, 260, 2)}
    assert SERIES_COLOURS[0] in colours and SERIES_COLOURS[1] in colours

    empty = TrendChart("SpO2", "%")
    qtbot.addWidget(empty)
    empty.resize(300, 150)
    empty.set_series([Series("SpO2", [])])
    assert empty.point_count == 0
    empty.grab()  # paints "No readings yet" without error


def test_banner_shows_who_allergies_in_red_and_sync_state(qtbot) -> None:
    from datetime import date

    from desktop.services.chart import Banner
    from desktop.ui.chart.banner import PatientBanner

    banner = PatientBanner()
    qtbot.addWidget(banner)
    banner.set_banner(
        Banner("p1", "Okafor, Grace", date(1958, 3, 14), 68, "female", "MRN0012345",
               ("Penicillin", "Latex")),
        pending=2, conflicts=1, newer=1,
    )  # fmt: skip
    assert banner.name_label.text() == "Okafor, Grace"
    assert banner.details_label.text() == "68 y  ·  Female  ·  born 14 Mar 1958  ·  MRN MRN0012345"
    assert banner.allergies_label.text() == "ALLERGIES: Penicillin, Latex"
    assert banner.allergies_label.property("hasAllergies") is True
    sync = banner.sync_label.text()
    assert "1 conflict(s)" in sync and "2 change(s)" in sync and "changed on the server" in sync
    banner.set_banner(Banner("p2", "Doe, Sam", None, None, "", "", ()))
    assert banner.allergies_label.text() == "No allergies recorded"
    assert banner.allergies_label.property("hasAllergies") is False
    assert "no MRN" in banner.details_label.text() and banner.sync_label.text() == ""
