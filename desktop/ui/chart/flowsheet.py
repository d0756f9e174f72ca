"""Vitals flowsheet: one row per vital sign, one column per time of measurement."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont

from desktop.services.vitals import FLOWSHEET_ROWS, ROW_LABELS, ROW_UNITS, FlowsheetColumn

_Index = QModelIndex | QPersistentModelIndex
_PENDING = QColor("#8a4b00")


class VitalsFlowsheetModel(QAbstractTableModel):
    """Read-only; fed with `FlowsheetColumn`s built by `desktop.services.vitals`."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._columns: list[FlowsheetColumn] = []

    def set_columns(self, columns: Sequence[FlowsheetColumn]) -> None:
        self.beginResetModel()
        self._columns = list(columns)
        self.endResetModel()

    def column_at(self, column: int) -> FlowsheetColumn:
        return self._columns[column]

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(FLOWSHEET_ROWS)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._columns)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        column = self._columns[index.column()]
        row = FLOWSHEET_ROWS[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(row)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ForegroundRole and column.pending:
            return QBrush(_PENDING)
        if role == Qt.ItemDataRole.ToolTipRole and column.text(row):
            note = " (not yet on the server)" if column.pending else ""
            return f"{ROW_LABELS[row]} {column.text(row)} {ROW_UNITS[row]}{note}"
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if orientation == Qt.Orientation.Horizontal:
            if not 0 <= section < len(self._columns):
                return None
            column = self._columns[section]
            if role == Qt.ItemDataRole.DisplayRole:
                return column.when.strftime("%d %b %Y\n%H:%M")
            if role == Qt.ItemDataRole.FontRole and section == 0:
                font = QFont()
                font.setBold(True)
                return font
            return None
        if not 0 <= section < len(FLOWSHEET_ROWS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            row = FLOWSHEET_ROWS[section]
            return f"{ROW_LABELS[row]} ({ROW_UNITS[row]})"
        return None
