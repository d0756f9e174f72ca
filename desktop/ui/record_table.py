"""One table model for every list of records (problems, allergies, schedule, ...).

Each list declares its columns (header + how to read a cell from a record); the
model holds the records and answers Qt. Records are the facade's frozen
dataclasses; `pending` / `conflict` attributes, when present, colour the row so
sync state shows where the clinician looks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPaintEvent
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView

R = TypeVar("R")
_Index = QModelIndex | QPersistentModelIndex

PENDING_COLOUR = QColor("#8a4b00")
CONFLICT_COLOUR = QColor("#b42318")
MUTED_COLOUR = QColor("#7b8794")

#: Custom role: the record object behind a row (for views and tests).
RECORD_ROLE = int(Qt.ItemDataRole.UserRole) + 1
#: Custom role: a sortable value (dates sort as dates, not as display text).
SORT_ROLE = int(Qt.ItemDataRole.UserRole) + 2


_ANSWERED_ROLES = frozenset(
    {
        int(Qt.ItemDataRole.DisplayRole),
        int(Qt.ItemDataRole.ForegroundRole),
        int(Qt.ItemDataRole.FontRole),
        int(Qt.ItemDataRole.ToolTipRole),
        SORT_ROLE,
        RECORD_ROLE,
    }
)


@dataclass(frozen=True)
class Column(Generic[R]):
    header: str
    text: Callable[[R], str]
    sort_key: Callable[[R], Any] | None = None
    tooltip: Callable[[R], str] | None = None


def row_state(record: object) -> str:
    """ "conflict", "pending" or "" for a record with those flags."""
    if getattr(record, "conflict", False):
        return "conflict"
    if getattr(record, "pending", False):
        return "pending"
    return ""


class RecordTableModel(QAbstractTableModel, Generic[R]):
    def __init__(
        self,
        columns: Sequence[Column[R]],
        parent: Any = None,
        *,
        muted: Callable[[R], bool] | None = None,
    ) -> None:
        super().__init__(parent)
        self.columns = list(columns)
        self._records: list[R] = []
        self._muted = muted

    def set_records(self, records: Sequence[R]) -> None:
        self.beginResetModel()
        self._records = list(records)
        self.endResetModel()

    def record(self, row: int) -> R:
        return self._records[row]

    @property
    def records(self) -> list[R]:
        return list(self._records)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._records)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        # Called for every visible cell and role on each paint: leave early and cheaply.
        if role not in _ANSWERED_ROLES or not index.isValid():
            return None
        record = self._records[index.row()]
        column = self.columns[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(record)
        if role == SORT_ROLE:
            return column.sort_key(record) if column.sort_key else column.text(record)
        if role == RECORD_ROLE:
            return record
        state = row_state(record)
        if role == Qt.ItemDataRole.ForegroundRole:
            if state == "conflict":
                return QBrush(CONFLICT_COLOUR)
            if state == "pending":
                return QBrush(PENDING_COLOUR)
            if self._muted and self._muted(record):
                return QBrush(MUTED_COLOUR)
        if role == Qt.ItemDataRole.FontRole and state == "conflict":
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            if state == "conflict":
                return "Open conflict: review it in the worklist."
            if state == "pending":
                return "Saved on this computer, not yet on the server."
            return column.tooltip(record) if column.tooltip else None
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            role == Qt.ItemDataRole.DisplayRole
            and orientation == Qt.Orientation.Horizontal
            and 0 <= section < len(self.columns)
        ):
            return self.columns[section].header
        return None


class RecordTableView(QTableView):
    """A table that says "None recorded" instead of showing an empty grid."""

    empty_text = "None recorded"

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        model = self.model()
        if model is not None and model.rowCount() == 0:
            painter = QPainter(self.viewport())
            painter.setPen(MUTED_COLOUR)
            painter.drawText(
                self.viewport().rect().adjusted(8, 8, -8, -8),
                int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop),
                self.empty_text,
            )


def make_table_view(model: QAbstractItemModel, parent: Any = None) -> RecordTableView:
    """A read-only, row-selecting, keyboard-friendly table view over `model`."""
    view = RecordTableView(parent)
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.verticalHeader().hide()
    view.horizontalHeader().setStretchLastSection(True)
    view.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    # Size columns from the first rows only, not every row on each reset.
    view.horizontalHeader().setResizeContentsPrecision(25)
    view.setTabKeyNavigation(False)
    return view
