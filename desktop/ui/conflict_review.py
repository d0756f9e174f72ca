"""Conflict review: the two versions side by side, differing fields highlighted.

Top: what happened, in plain words. Middle: one row per field that differs,
with my value and the server's value (the base version on demand); fields
changed in two different ways are highlighted. For "edit merged", the
"Use" column says which side each field comes from (Space or double-click
toggles it). Bottom: Keep theirs / Keep mine / Save merged.

A decision on a conflict of the server's review queue is settled with the
server (at once when online, otherwise at the next sync: the worklist then says
it waits). For a change the server refused, "keep theirs" reads "Discard my
change" and brings back the server's copy.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop.services.conflict_review import (
    ConflictView,
    FieldDiff,
    build_merged,
    conflict_view,
    decider_needed,
)
from desktop.ui.context import UiContext
from desktop.ui.ops import Op
from desktop.ui.record_table import make_table_view

_Index = QModelIndex | QPersistentModelIndex
BOTH_CHANGED = QColor("#ffe1dc")
ONE_CHANGED = QColor("#fff3d6")
HEADERS = ("Field", "Base (before both edits)", "Mine (this computer)", "Theirs (server)", "Use")
#: The "mine" column of a conflict another workstation sent (listed from the server's queue).
SENT_HEADER = "Mine (sent from another workstation)"
BASE_COLUMN, MINE_COLUMN, THEIRS_COLUMN, USE_COLUMN = 1, 2, 3, 4


class FieldDiffModel(QAbstractTableModel):
    def __init__(self, diffs: list[FieldDiff], parent: Any = None, *, sent: bool = False) -> None:
        super().__init__(parent)
        self.diffs = diffs
        self.headers = (
            (*HEADERS[:MINE_COLUMN], SENT_HEADER, *HEADERS[MINE_COLUMN + 1 :]) if sent else HEADERS
        )
        # Default for a merge: the server's value, except where only I changed it.
        self.use_mine = {d.path for d in diffs if d.changed_by_me and not d.changed_by_them}

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.diffs)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(HEADERS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        diff = self.diffs[index.row()]
        column = index.column()
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            values = (diff.label, diff.base, diff.mine, diff.theirs)
            if column == USE_COLUMN:
                return "Mine" if diff.path in self.use_mine else "Theirs"
            text = values[column]
            return text if text or column == 0 else "(empty)"
        if role == Qt.ItemDataRole.BackgroundRole and column in (MINE_COLUMN, THEIRS_COLUMN):
            if diff.changed_by_me and diff.changed_by_them and diff.mine != diff.theirs:
                return QBrush(BOTH_CHANGED)
            changed = diff.changed_by_me if column == MINE_COLUMN else diff.changed_by_them
            return QBrush(ONE_CHANGED) if changed else None
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(self.headers)
        ):
            return self.headers[section]
        return None

    def toggle(self, row: int) -> None:
        path = self.diffs[row].path
        self.use_mine ^= {path}
        cell = self.index(row, USE_COLUMN)
        self.dataChanged.emit(cell, cell)


class ConflictReviewDialog(QDialog):
    resolved = Signal(str)

    def __init__(self, ctx: UiContext, record: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.view_model: ConflictView = conflict_view(record)
        self.setObjectName("conflictReview")
        self.setWindowTitle("Review a conflict")
        self.explanation = QLabel(self.view_model.explanation)
        self.explanation.setObjectName("explanation")
        self.explanation.setWordWrap(True)
        self.model = FieldDiffModel(
            self.view_model.diffs, self, sent=self.view_model.from_elsewhere
        )
        self.table = make_table_view(self.model, self)
        self.table.setObjectName("diffTable")
        self.table.setWordWrap(True)
        self.table.setColumnHidden(BASE_COLUMN, True)
        self.table.doubleClicked.connect(lambda index: self.model.toggle(index.row()))
        QShortcut(QKeySequence(Qt.Key.Key_Space), self.table, self._toggle_current)
        self.show_base = QCheckBox("Show the base version (before both edits)")
        self.show_base.toggled.connect(lambda on: self.table.setColumnHidden(BASE_COLUMN, not on))
        legend = QLabel(
            "Red: changed on both sides in different ways. Amber: changed on one side. "
            "“Use” picks the side for a merged version (Space toggles)."
        )
        legend.setProperty("role", "hint")
        legend.setWordWrap(True)
        self.theirs_button = QPushButton("Keep &theirs (server)")
        self.theirs_button.setObjectName("keepTheirs")
        self.mine_button = QPushButton("Keep &mine")
        self.mine_button.setObjectName("keepMine")
        self.merged_button = QPushButton("Save &merged")
        self.merged_button.setObjectName("saveMerged")
        self.merged_button.setProperty("primary", True)
        cancel = QPushButton("Decide later")
        self.theirs_button.clicked.connect(lambda: self.resolve("theirs"))
        self.mine_button.clicked.connect(lambda: self.resolve("mine"))
        self.merged_button.clicked.connect(lambda: self.resolve("merged"))
        cancel.clicked.connect(self.reject)
        if self.view_model.record.status == "rejected":
            self.theirs_button.setText("&Discard my change (use the server's copy)")
        if self.view_model.mine is None:
            self.merged_button.setEnabled(False)
            if self.view_model.in_server_queue:
                self.mine_button.setText("Keep &my deletion")
            else:
                self.mine_button.setEnabled(False)
        #: Set when this user's role may not decide it (a nurse and a medication conflict).
        self.decider = decider_needed(record, getattr(ctx.user, "roles", None))
        self.decider_note = QLabel(
            f"Only {self.decider} can decide this conflict. It stays in the review queue for "
            "them; you can still compare both versions here."
        )
        self.decider_note.setObjectName("deciderNote")
        self.decider_note.setProperty("role", "pending")
        self.decider_note.setWordWrap(True)
        self.decider_note.setVisible(self.decider is not None)
        if self.decider is not None:
            for button in (self.theirs_button, self.mine_button, self.merged_button):
                button.setEnabled(False)
            cancel.setText("Close")
        buttons = QHBoxLayout()
        buttons.addWidget(self.theirs_button)
        buttons.addWidget(self.mine_button)
        buttons.addWidget(self.merged_button)
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.explanation)
        layout.addWidget(self.decider_note)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.show_base)
        layout.addWidget(legend)
        layout.addLayout(buttons)
        self.resize(900, 520)
        #: "resolved", or "queued" when the decision waits for the next sync.
        self.outcome: str | None = None

    def _toggle_current(self) -> None:
        index = self.table.currentIndex()
        if index.isValid():
            self.model.toggle(index.row())

    def merged(self) -> dict[str, Any]:
        view = self.view_model
        return build_merged(view.theirs or {}, view.mine or {}, self.model.use_mine)

    def resolve(self, choice: str) -> None:
        merged = self.merged() if choice == "merged" else None
        conflict_id = self.view_model.record.conflict_id
        for button in (self.theirs_button, self.mine_button, self.merged_button):
            button.setEnabled(False)

        def done(result: object) -> None:
            self.outcome = str(result)
            self.ctx.bus.announce(
                {"conflicts", "pending", "all"}, self.view_model.record.patient_id
            )
            self.resolved.emit(choice)
            self.accept()

        def failed(error: BaseException) -> None:
            for button in (self.theirs_button, self.mine_button, self.merged_button):
                button.setEnabled(True)
            self.ctx.errors.show(self, error)

        Op(
            self,
            lambda ws: ws.resolve_conflict(conflict_id, choice, merged),
            name="resolve-conflict",
        ).success(done).failure(failed).run(self.ctx)
