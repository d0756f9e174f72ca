"""Notes: write from a template, autosaved drafts, sign (immutable), addendum, read view.

A draft autosaves a few seconds after typing stops (and when the chart closes),
as a preliminary DocumentReference: encrypted on this computer and queued for
the server like any change. Signing makes it final; a signed note opens in the
read view only, and a correction is an addendum.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop.config import resources_dir
from desktop.services.chart import NoteItem
from desktop.services.notes import (
    NoteTemplate,
    addendum,
    is_signed,
    load_templates,
    new_draft,
    note_text,
    note_title,
    sign,
    update_draft,
)
from desktop.ui.chart.edits import change_existing, save_new
from desktop.ui.context import UiContext
from desktop.ui.ops import Op
from desktop.ui.record_table import Column, RecordTableModel, make_table_view

AUTOSAVE_MS = 3000

STATUS_WORDS = {"preliminary": "Draft", "final": "Signed", "amended": "Amended"}

COLUMNS: list[Column[NoteItem]] = [
    Column("Date", lambda n: n.date[:16].replace("T", " ")),
    Column("Note", lambda n: n.title),
    Column("Status", lambda n: STATUS_WORDS.get(n.status, n.status or "Signed")),
    Column("Author", lambda n: n.author),
]


class NotesPanel(QWidget):
    def __init__(self, ctx: UiContext, patient_id: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.patient_id = patient_id
        self.templates: list[NoteTemplate] = load_templates(resources_dir() / "templates")
        #: The note being written: its id once first saved, the template, the mode.
        self.draft_id: str | None = None
        self.addendum_to: dict[str, Any] | None = None
        self.template: NoteTemplate | None = None
        self.shown_note: dict[str, Any] | None = None
        self._dirty = False

        self.model: RecordTableModel[NoteItem] = RecordTableModel(COLUMNS, self)
        self.list_view = make_table_view(self.model, self)
        self.list_view.activated.connect(
            lambda index: self.open_note(self.model.record(index.row()))
        )
        self.list_view.clicked.connect(lambda index: self.open_note(self.model.record(index.row())))
        self.template_box = QComboBox()
        self.template_box.setObjectName("templateBox")
        for template in self.templates:
            self.template_box.addItem(template.title, template.key)
        self.new_button = QPushButton("&New note")
        self.new_button.setObjectName("newNoteButton")
        self.new_button.clicked.connect(self.new_note)
        new_row = QHBoxLayout()
        new_row.addWidget(self.template_box, 1)
        new_row.addWidget(self.new_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(new_row)
        left_layout.addWidget(self.list_view)

        self.stack = QStackedWidget()
        self.stack.addWidget(self._build_reader())
        self.stack.addWidget(self._build_editor())
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.stack)
        splitter.setSizes([380, 620])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.save_draft)

    # -- building ------------------------------------------------------------

    def _build_reader(self) -> QWidget:
        page = QWidget()
        self.reader_title = QLabel("Select a note to read it, or start a new one.")
        self.reader_title.setProperty("role", "heading")
        self.reader_title.setWordWrap(True)
        self.reader_text = QPlainTextEdit()
        self.reader_text.setObjectName("noteReader")
        self.reader_text.setReadOnly(True)
        self.addendum_button = QPushButton("Add &addendum")
        self.addendum_button.setObjectName("addendumButton")
        self.addendum_button.clicked.connect(self.start_addendum)
        self.continue_button = QPushButton("Continue &editing draft")
        self.continue_button.clicked.connect(self.continue_draft)
        for button in (self.addendum_button, self.continue_button):
            button.hide()
        row = QHBoxLayout()
        row.addWidget(self.addendum_button)
        row.addWidget(self.continue_button)
        row.addStretch(1)
        layout = QVBoxLayout(page)
        layout.addWidget(self.reader_title)
        layout.addWidget(self.reader_text, 1)
        layout.addLayout(row)
        return page

    def _build_editor(self) -> QWidget:
        page = QWidget()
        self.editor_title = QLabel()
        self.editor_title.setProperty("role", "heading")
        self.editor_hint = QLabel()
        self.editor_hint.setProperty("role", "hint")
        self.editor_hint.setWordWrap(True)
        self.editor = QPlainTextEdit()
        self.editor.setObjectName("noteEditor")
        self.editor.textChanged.connect(self._edited)
        self.save_state = QLabel()
        self.save_state.setObjectName("draftState")
        self.save_state.setProperty("role", "hint")
        self.save_button = QPushButton("Save draft")
        self.save_button.setToolTip("Save draft (Ctrl+S); drafts also save by themselves")
        self.save_button.clicked.connect(self.save_draft)
        self.sign_button = QPushButton("Sign note")
        self.sign_button.setObjectName("signNoteButton")
        self.sign_button.setProperty("primary", True)
        self.sign_button.setToolTip("Sign (Ctrl+Return): the note can no longer be changed")
        self.sign_button.clicked.connect(self.sign_note)
        row = QHBoxLayout()
        row.addWidget(self.save_state, 1)
        row.addWidget(self.save_button)
        row.addWidget(self.sign_button)
        layout = QVBoxLayout(page)
        layout.addWidget(self.editor_title)
        layout.addWidget(self.editor_hint)
        layout.addWidget(self.editor, 1)
        layout.addLayout(row)
        QShortcut(QKeySequence.StandardKey.Save, page, self.save_draft)
        QShortcut(QKeySequence("Ctrl+Return"), page, self.sign_note)
        return page

    # -- list ----------------------------------------------------------------

    def set_notes(self, notes: tuple[NoteItem, ...]) -> None:
        self.model.set_records(notes)

    def open_note(self, item: NoteItem) -> None:
        if self.is_editing:
            self.save_draft()
        Op(self, lambda ws: ws.get_resource(item.resource_type, item.id)[0]).success(
            self.show_note
        ).run(self.ctx)

    def show_note(self, resource: dict[str, Any]) -> None:
        self.shown_note = resource
        signed = is_signed(resource)
        state = "Signed" if signed else "Draft (not signed)"
        self.reader_title.setText(
            f"{note_title(resource)}: {state}, {resource.get('date', '')[:16]}"
        )
        self.reader_text.setPlainText(note_text(resource))
        self.addendum_button.setVisible(signed)
        self.continue_button.setVisible(not signed)
        self.stack.setCurrentIndex(0)

    # -- writing -------------------------------------------------------------

    @property
    def is_editing(self) -> bool:
        return self.stack.currentIndex() == 1

    def _start_editor(self, title: str, text: str, hint: str = "") -> None:
        self.editor_title.setText(title)
        self.editor_hint.setText(hint)
        self.editor_hint.setVisible(bool(hint))
        self.editor.blockSignals(True)
        self.editor.setPlainText(text)
        self.editor.blockSignals(False)
        # Start typing under the first heading, not above it.
        cursor = self.editor.textCursor()
        cursor.setPosition(text.find("\n") + 1 if "\n" in text else len(text))
        self.editor.setTextCursor(cursor)
        self._dirty = False
        self.save_state.setText("")
        self.stack.setCurrentIndex(1)
        self.editor.setFocus()

    def new_note(self) -> None:
        if self.is_editing:
            self.save_draft()
        self.template = self.templates[self.template_box.currentIndex()]
        self.draft_id = None
        self.addendum_to = None
        self._start_editor(f"New {self.template.title}", self.template.body, self.template.hint)
        self.save_button.show()

    def continue_draft(self) -> None:
        if self.shown_note is None:
            return
        self.draft_id = self.shown_note["id"]
        self.addendum_to = None
        self.template = None
        self._start_editor(note_title(self.shown_note), note_text(self.shown_note))
        self.save_button.show()

    def start_addendum(self) -> None:
        if self.shown_note is None:
            return
        self.addendum_to = self.shown_note
        self.draft_id = None
        self._start_editor(f"Addendum to {note_title(self.shown_note)}", "")
        self.save_button.hide()  # an addendum is written and signed in one go

    def _edited(self) -> None:
        self._dirty = True
        self.save_state.setText("Unsaved changes…")
        if self.addendum_to is None:
            self.autosave_timer.start()

    def save_draft(self) -> None:
        """Save the draft if it changed (autosave, Ctrl+S, leaving the editor)."""
        self.autosave_timer.stop()
        if not self._dirty or self.addendum_to is not None or not self.is_editing:
            return
        text = self.editor.toPlainText()
        if self.draft_id is None:
            assert self.template is not None
            resource = new_draft(self.patient_id, self.template, text, author=self.ctx.practitioner)
            self.draft_id = resource["id"]
            fn = save_new(resource)
        else:
            fn = change_existing(
                "DocumentReference", self.draft_id, lambda r: update_draft(r, text)
            )
        self._dirty = False
        Op(self, fn, name="save-draft", announces=True).success(
            lambda _r: self.save_state.setText("Draft saved on this computer.")
        ).failure(self._save_failed).run(self.ctx)

    def _save_failed(self, error: BaseException) -> None:
        self._dirty = True
        self.save_state.setText("Draft NOT saved.")
        self.ctx.errors.show(self, error)

    def sign_note(self) -> None:
        if not self.is_editing:
            return
        self.autosave_timer.stop()
        text = self.editor.toPlainText()
        if not text.strip():
            self.save_state.setText("The note is empty.")
            return
        if self.addendum_to is not None:
            fn = save_new(addendum(self.addendum_to, text, author=self.ctx.practitioner))
        elif self.draft_id is None:
            assert self.template is not None
            draft = new_draft(self.patient_id, self.template, text, author=self.ctx.practitioner)
            fn = save_new(sign(draft, text))
        else:
            fn = change_existing("DocumentReference", self.draft_id, lambda r: sign(r, text))
        self.sign_button.setEnabled(False)
        self._dirty = False
        Op(self, fn, name="sign-note", announces=True).success(self._signed).finally_(
            lambda: self.sign_button.setEnabled(True)
        ).run(self.ctx)

    def _signed(self, _result: object) -> None:
        title = self.editor_title.text().removeprefix("New ")
        self.draft_id = None
        self.addendum_to = None
        self.stack.setCurrentIndex(0)
        self.shown_note = None
        self.reader_title.setText(f"Signed: {title}. It can no longer be changed.")
        self.reader_text.clear()
        self.addendum_button.hide()
        self.continue_button.hide()
