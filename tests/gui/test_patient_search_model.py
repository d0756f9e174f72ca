"""The patient search's item model: same rows, sorting and records as the table models."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtTest import QAbstractItemModelTester

from desktop.store.resources import PatientSummary
from desktop.ui.patient_search import PatientSearchModel

pytestmark = pytest.mark.gui

ROWS = [
    PatientSummary("p1", "Smith, Ana", "1980-02-03", "female", "MRN1"),
    PatientSummary("p2", "smith, Ben", "1975-06-30", "male", None),
    PatientSummary("p3", "Smithers, Cy", None, "other", "MRN3"),
]


def test_rows_records_and_sorting(qapp) -> None:
    model = PatientSearchModel()
    QAbstractItemModelTester(model)
    proxy = QSortFilterProxyModel()
    proxy.setSourceModel(model)
    proxy.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
    model.set_records(ROWS)
    assert model.rowCount() == 3 and model.columnCount() == 4
    headers = [model.headerData(c, Qt.Orientation.Horizontal) for c in range(4)]
    assert headers == ["Name", "Born", "Sex", "MRN"]
    assert [model.index(1, c).data() for c in range(4)] == ["smith, Ben", "1975-06-30", "M", ""]
    assert not model.flags(model.index(0, 0)) & Qt.ItemFlag.ItemIsEditable
    proxy.sort(1, Qt.SortOrder.AscendingOrder)  # by birth date; the unknown one first
    order = [model.record(proxy.mapToSource(proxy.index(r, 0)).row()).patient_id for r in range(3)]
    assert order == ["p3", "p2", "p1"]
    model.set_records(ROWS[:1])  # the next keystroke's answer replaces the rows
    assert model.records == ROWS[:1] and proxy.rowCount() == 1
    model.set_records([])
    assert model.rowCount() == 0 and model.records == []
