"""Patient search with type-ahead over the local encrypted cache.

Each keystroke restarts a short timer; when typing pauses, one search op runs
on the store thread. Answers to older keystrokes are dropped (only the newest
query's rows are shown), so a slow answer never overwrites a newer one. The
proxy sorts by any column without asking the store again.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from PySide6.QtCore import QEvent, QModelIndex, QObject, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QHeaderView, QLabel, QLineEdit, QVBoxLayout, QWidget

from desktop.store.resources import PatientSummary
from desktop.ui.context import UiContext
from desktop.ui.ops import Op
from desktop.ui.record_table import Column, make_table_view

#: Search as soon as the keystrokes already queued are handled (a search costs a few ms;
#: answers to older keystrokes are dropped, so no pause is needed).
TYPE_AHEAD_MS = 0
RESULT_LIMIT = 50
SEX = {"male": "M", "female": "F", "other": "Other", "unknown": "?"}

COLUMNS: list[Column[PatientSummary]] = [
    Column("Name", lambda p: p.display_name),
    Column("Born", lambda p: p.birth_date or ""),
    Column("Sex", lambda p: SEX.get(p.sex or "", "")),
    Column("MRN", lambda p: p.mrn or ""),
]


class PatientSearchModel(QStandardItemModel):
    """The results as plain Qt items, not a Python `data()`: a paint asks ~7 roles of every
    visible cell, and on the type-ahead path those Python calls were half of each
    keystroke's repaint. Same interface as the `RecordTableModel`s (`set_records`,
    `record`, `records`); the proxy sorts on the displayed text, as it did before."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels([column.header for column in COLUMNS])
        self._records: list[PatientSummary] = []

    def set_records(self, records: Sequence[PatientSummary]) -> None:
        self.removeRows(0, self.rowCount())
        self._records = list(records)
        for record in self._records:
            row = []
            for column in COLUMNS:
                item = QStandardItem(column.text(record))
                item.setEditable(False)
                row.append(item)
            self.appendRow(row)

    def record(self, row: int) -> PatientSummary:
        return self._records[row]

    @property
    def records(self) -> list[PatientSummary]:
        return list(self._records)


class PatientSearch(QWidget):
    #: A patient was chosen (Enter or double-click): open their chart.
    open_patient = Signal(str)
    #: The list now shows the answer to the current text (for tests and benchmarks).
    results_shown = Signal(int)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._sequence = 0
        self.last_latency_ms: float | None = None
        self._typed_at = 0.0
        self.box = QLineEdit()
        self.box.setObjectName("patientSearchBox")
        self.box.setPlaceholderText("Search: name (smi jo), MRN, or birth date (1980-02-03)")
        self.box.setClearButtonEnabled(True)
        self.box.setAccessibleName("Patient search")
        self.model = PatientSearchModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.view = make_table_view(self.proxy, self)
        self.view.setObjectName("patientResults")
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # keep the store's ranking
        self._fix_column_widths()
        self.hint = QLabel("Type at least 2 letters, an MRN, or a birth date.")
        self.hint.setObjectName("searchHint")
        self.hint.setProperty("role", "hint")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.box)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.hint)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(TYPE_AHEAD_MS)
        self.timer.timeout.connect(self.search_now)
        self.box.textEdited.connect(self._typed)
        self.box.returnPressed.connect(self._enter)
        self.view.activated.connect(self._activated)
        self.view.doubleClicked.connect(self._activated)
        self.box.installEventFilter(self)

    def _fix_column_widths(self) -> None:
        """Widths from the font, not from the rows: columns stay put while the list changes
        under the typing, and no keystroke pays for measuring every cell."""
        self.view.ensurePolished()  # the style sheet's font, not the default one
        header = self.view.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        metrics = self.view.fontMetrics()
        for column, sample in ((1, "0000-00-00"), (2, "Other"), (3, "0" * 36)):
            header.resizeSection(column, metrics.horizontalAdvance(sample) + 16)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Down arrow in the search box moves into the results."""
        if (
            watched is self.box
            and event.type() == QEvent.Type.KeyPress
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Down
            and self.proxy.rowCount() > 0
        ):
            self.view.setFocus()
            self.view.selectRow(0)
            return True
        return super().eventFilter(watched, event)

    def _typed(self, _text: str) -> None:
        self._typed_at = time.perf_counter()
        self.timer.start()

    def search_now(self) -> None:
        self.timer.stop()
        text = self.box.text().strip()
        self._sequence += 1
        sequence = self._sequence
        if len(text) < 2:
            self.model.set_records([])
            self.hint.setText("Type at least 2 letters, an MRN, or a birth date.")
            self.results_shown.emit(0)
            return
        started = self._typed_at or time.perf_counter()

        def show(rows: list[PatientSummary]) -> None:
            if sequence != self._sequence:
                return  # an answer to an older keystroke
            self.model.set_records(rows)
            self.last_latency_ms = (time.perf_counter() - started) * 1000
            if not rows:
                self.hint.setText("No patient found on this computer.")
            elif len(rows) >= RESULT_LIMIT:
                self.hint.setText(f"First {len(rows)} matches: type more to narrow down.")
            else:
                self.hint.setText(f"{len(rows)} patient(s). Enter opens the chart.")
            self.results_shown.emit(len(rows))

        Op(self, lambda ws: ws.search_patients(text, RESULT_LIMIT), name="search").success(
            show
        ).run(self.ctx)

    def _enter(self) -> None:
        if self.timer.isActive():
            self.search_now()
            return
        if self.proxy.rowCount() >= 1:
            selected = self.view.selectionModel().selectedRows()
            self._activated(selected[0] if selected else self.proxy.index(0, 0))

    def _activated(self, index: QModelIndex) -> None:
        if index.isValid():
            source = self.proxy.mapToSource(index)
            self.open_patient.emit(self.model.record(source.row()).patient_id)

    def focus_search(self) -> None:
        self.box.setFocus()
        self.box.selectAll()
