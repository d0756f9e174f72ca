"""The headless builders behind the chart screens: FHIR they produce, merges, explanations."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise

import pytest

from desktop.config import resources_dir
from desktop.services.clinical_edits import (
    allergy_entered_in_error,
    discontinue_medication,
    new_allergy,
    new_medication,
    new_problem,
    resolve_problem,
)
from desktop.services.conflict_review import build_merged, explain, field_diffs, label_of
from desktop.services.notes import (
    NoteImmutable,
    addendum,
    is_signed,
    load_templates,
    new_draft,
    note_text,
    sign,
    update_draft,
)
from desktop.services.vitals import build_flowsheet, latest_values, trend_series
from desktop.store.conflicts import ConflictRecord
from shared_models.fhir_validation import validate_resource


@pytest.fixture(scope="module")
def soap():
    return {t.key: t for t in load_templates(resources_dir() / "templates")}["soap_progress_note"]


def test_templates_load_with_codes_and_hints() -> None:
    templates = load_templates(resources_dir() / "templates")
    assert {t.key for t in templates} == {"soap_progress_note", "nursing_note"}
    for template in templates:
        assert template.loinc and template.hint and "---" not in template.body
        assert template.body.splitlines()[0].endswith(":")


def test_draft_sign_addendum_lifecycle(soap) -> None:
    draft = new_draft("p1", soap, "Subjective:\nCough", author="Practitioner/d1")
    validate_resource(draft)
    assert not is_signed(draft) and note_text(draft) == "Subjective:\nCough"
    edited = update_draft(draft, "Subjective:\nCough, 3 days")
    signed = sign(edited, "Subjective:\nCough, 3 days. Wheeze.")
    validate_resource(signed)
    assert is_signed(signed) and signed["id"] == draft["id"]
    with pytest.raises(NoteImmutable):
        update_draft(signed, "changed after signing")
    with pytest.raises(ValueError):
        addendum(draft, "too early")
    extra = addendum(signed, "Chest X-ray normal.", author="Practitioner/d1")
    validate_resource(extra)
    assert extra["relatesTo"][0] == {
        "code": "appends",
        "target": {"reference": f"DocumentReference/{signed['id']}"},
    }
    assert note_text(signed) == "Subjective:\nCough, 3 days. Wheeze."  # original untouched


def test_allergy_problem_medication_edits_are_valid_fhir() -> None:
    allergy = new_allergy("p1", "Penicillin", reaction="Hives", severity="moderate",
                          criticality="high", recorder="Practitioner/n1")  # fmt: skip
    erred = allergy_entered_in_error(allergy, "Wrong patient")
    problem = new_problem("p1", "Asthma", onset=datetime(2020, 5, 1, tzinfo=UTC).date())
    medication = new_medication("p1", "Salbutamol inhaler", dosage="2 puffs as needed")
    stopped = discontinue_medication(medication, "No longer needed")
    for resource in (allergy, erred, problem, resolve_problem(problem), medication, stopped):
        validate_resource(resource)
    assert "clinicalStatus" not in erred  # FHIR: none for entered-in-error
    assert erred["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert stopped["status"] == "stopped" and stopped["statusReason"]["text"] == "No longer needed"
    with pytest.raises(ValueError):
        allergy_entered_in_error(allergy, "   ")
    with pytest.raises(ValueError):
        new_allergy("p1", " ")


def _med(dose: str, frequency: int, status: str = "active") -> dict:
    return {"resourceType": "MedicationRequest", "id": "m1", "status": status, "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {"text": "Metformin"},
            "dosageInstruction": [{"text": dose, "timing": {"repeat": {"frequency": frequency}}}],
            "meta": {"versionId": "4", "lastUpdated": "2026-11-28T10:42:00+00:00"}}  # fmt: skip


def test_diffs_explanation_and_merge() -> None:
    base, mine, theirs = _med("1 tab", 1), _med("2 tabs", 1), _med("1 tab", 2)
    diffs = field_diffs(base, mine, theirs)
    assert [(d.path, d.changed_by_me, d.changed_by_them) for d in diffs] == [
        ("dosageInstruction[0].text", True, False),
        ("dosageInstruction[0].timing.repeat.frequency", False, True),
    ]
    assert label_of("dosageInstruction[0].timing.repeat.frequency") == (
        "Dosage instruction › Frequency"
    )
    record = ConflictRecord("c1", "MedicationRequest", "m1", "p1", "conflict", "", None, 4,
                            None, None, None, datetime.now(UTC), None)  # fmt: skip
    words = explain(record, diffs, theirs)
    assert "You changed the dosage instruction › text" in words
    assert "someone else changed the dosage instruction › frequency" in words
    merged = build_merged(theirs, mine, {"dosageInstruction[0].text"})
    assert merged["dosageInstruction"][0] == {"text": "2 tabs",
                                              "timing": {"repeat": {"frequency": 2}}}  # fmt: skip
    validate_resource(merged)
    # A field only I removed is removed in the merge when I choose mine.
    mine_without = _med("1 tab", 1)
    del mine_without["dosageInstruction"][0]["timing"]
    merged = build_merged(theirs, mine_without, {"dosageInstruction[0].timing.repeat.frequency"})
    assert "frequency" not in merged["dosageInstruction"][0].get("timing", {}).get("repeat", {})


def test_diff_table_names_the_side_another_workstation_sent(qapp: object) -> None:
    from PySide6.QtCore import Qt

    from desktop.ui.conflict_review import MINE_COLUMN, FieldDiffModel

    diffs = field_diffs(_med("1 tab", 1), _med("2 tabs", 1), _med("1 tab", 2))
    here = FieldDiffModel(diffs).headerData(MINE_COLUMN, Qt.Orientation.Horizontal)
    sent = FieldDiffModel(diffs, sent=True).headerData(MINE_COLUMN, Qt.Orientation.Horizontal)
    assert (here, sent) == ("Mine (this computer)", "Mine (sent from another workstation)")


def test_flowsheet_groups_by_time_newest_first(readings) -> None:
    columns = build_flowsheet(readings)
    assert all(a.when > b.when for a, b in pairwise(columns))
    latest = latest_values(columns)
    assert "bp" in latest and latest["bp"][1] == next(c.when for c in columns if c.text("bp"))
    series = trend_series(columns, "weight")
    assert series == sorted(series)


def test_pausing_the_initial_download_stops_after_the_stored_page() -> None:
    from desktop.services.initial_download import (
        DownloadPaused,
        PausableProgress,
        describe,
        describe_left,
    )

    progress = PausableProgress()
    progress.start_push(0)
    progress.start_pull()
    progress.pulled(500, 1_000_000)  # not paused: the sync goes on
    progress.pause()
    with pytest.raises(DownloadPaused):
        progress.pulled(500, 1_000_000)  # this page is stored; the sync stops here
    snap = progress.latest()
    assert snap.pulled == 1000 and snap.bytes_received == 2_000_000
    assert describe(12_345, 34_500_000, 80) == "12,345 records (34.5 MB) in 1 min 20 s"
    assert describe_left(12_345, 100_000, 130.4) == (
        "12,345 of about 100,000 records, about 2 min 10 s left"
    )
    assert describe_left(100_100, 100_000, 0.2) == "100,100 of about 100,100 records, almost done"
    assert describe_left(10, 100, None) == "10 of about 100 records"
