"""Clinical notes as FHIR `DocumentReference`s: templates, drafts, signing, addenda.

Pure builders (no I/O except reading the template folder). A draft is a
`docStatus: preliminary` note saved like any resource (encrypted locally, queued
for the server), so an autosaved draft survives a crash or a stolen laptop.
Signing sets `docStatus: final`; from then on the note is immutable (the server's
merge rules refuse changes to it) and corrections go in an addendum: a new
signed note that `relatesTo` the original with code `appends`.
"""

from __future__ import annotations

import base64
import copy
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared_models.fhir_constants import LOINC

ADDENDUM_LOINC = ("55107-7", "Addendum Document")


class NoteImmutable(ValueError):
    """A signed note cannot be changed (write an addendum)."""


@dataclass(frozen=True)
class NoteTemplate:
    key: str
    title: str
    loinc: str
    loinc_display: str
    body: str
    #: One line saying what goes in each section (shown above the editor, not saved).
    hint: str = ""


def load_templates(folder: Path) -> list[NoteTemplate]:
    """Templates in `folder/*.txt`: `key: value` header lines, `---`, then the body.

    Headers: `title`, `loinc` (the note type code), `loinc_display`, `hint`.
    """
    templates = []
    for path in sorted(folder.glob("*.txt")):
        head, _, body = path.read_text(encoding="utf-8").partition("\n---\n")
        fields = dict(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(":") for line in head.splitlines())
        )
        templates.append(
            NoteTemplate(
                key=path.stem,
                title=fields["title"],
                loinc=fields["loinc"],
                loinc_display=fields.get("loinc_display", fields["title"]),
                body=body,
                hint=fields.get("hint", ""),
            )
        )
    return templates


def _attachment(text: str, title: str) -> dict[str, Any]:
    return {
        "contentType": "text/plain; charset=utf-8",
        "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
        "title": title,
    }


def new_draft(
    patient_id: str,
    template: NoteTemplate,
    text: str,
    *,
    author: str | None = None,
    encounter: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": str(uuid.uuid4()),
        "status": "current",
        "docStatus": "preliminary",
        "type": {
            "coding": [
                {"system": LOINC, "code": template.loinc, "display": template.loinc_display}
            ],
            "text": template.title,
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "description": template.title,
        "content": [{"attachment": _attachment(text, template.title)}],
    }
    if author:
        resource["author"] = [{"reference": author}]
    if encounter:
        resource["context"] = {"encounter": [{"reference": encounter}]}
    return resource


def is_signed(resource: dict[str, Any]) -> bool:
    return resource.get("docStatus") in ("final", "amended")


def note_title(resource: dict[str, Any]) -> str:
    return str(
        resource.get("description") or resource.get("type", {}).get("text") or "Clinical note"
    )


def note_text(resource: dict[str, Any]) -> str:
    """The note's plain text (first text attachment), decoded."""
    for content in resource.get("content", []):
        attachment = content.get("attachment", {})
        if attachment.get("data"):
            return base64.b64decode(attachment["data"]).decode("utf-8", errors="replace")
    return ""


def update_draft(resource: dict[str, Any], text: str) -> dict[str, Any]:
    if is_signed(resource):
        raise NoteImmutable("a signed note cannot be changed")
    changed = copy.deepcopy(resource)
    changed["content"] = [{"attachment": _attachment(text, note_title(resource))}]
    changed["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    return changed


def sign(resource: dict[str, Any], text: str) -> dict[str, Any]:
    """The final text, signed: `docStatus: final`, authenticated now."""
    changed = update_draft(resource, text)
    changed["docStatus"] = "final"
    return changed


def addendum(original: dict[str, Any], text: str, *, author: str | None = None) -> dict[str, Any]:
    """A signed addendum appended to a signed note; the original stays as it was."""
    if not is_signed(original):
        raise ValueError("an addendum is for a signed note; edit the draft instead")
    if not text.strip():
        raise ValueError("the addendum is empty")
    title = f"Addendum to {note_title(original)}"
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": str(uuid.uuid4()),
        "status": "current",
        "docStatus": "final",
        "type": {
            "coding": [{"system": LOINC, "code": ADDENDUM_LOINC[0], "display": ADDENDUM_LOINC[1]}],
            "text": "Addendum",
        },
        "subject": copy.deepcopy(original.get("subject", {})),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "description": title,
        "relatesTo": [
            {"code": "appends", "target": {"reference": f"DocumentReference/{original['id']}"}}
        ],
        "content": [{"attachment": _attachment(text, title)}],
    }
    if author:
        resource["author"] = [{"reference": author}]
    return resource
