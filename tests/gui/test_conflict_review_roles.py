"""Who may decide a conflict: the review dialog follows the server's risk routes.

A medication or allergy conflict needs a prescriber (`shared_models.risk`):
a nurse can compare both versions but the decision buttons are off and the
dialog says who decides; a physician gets them. Conflicts this workstation
alone holds (a refused change) stay the person's own to discard.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "desktop"))

from desktop_store_helpers import FAST_KDF

from desktop.services.conflict_review import decider_needed
from desktop.services.workstation import Workstation
from desktop.store.conflicts import ConflictRecord
from desktop.sync.server_api import UserInfo
from desktop.ui.conflict_review import ConflictReviewDialog
from desktop.ui.context import UiContext
from shared_models.risk import RESOLVER_ROLES, ReviewRoute

pytestmark = pytest.mark.gui


def _conflict(resource_type: str, status: str = "conflict") -> ConflictRecord:
    base = {"resourceType": resource_type, "id": "r1", "status": "active", "note": [{"text": "a"}]}
    mine, theirs = {**base, "note": [{"text": "b"}]}, {**base, "note": [{"text": "c"}]}
    return ConflictRecord(
        conflict_id="5f0c3c57-6a55-4bd8-9d4c-2f0f5d0b1c11", resource_type=resource_type,
        id="r1", patient_id="p1", status=status, reason="Changed on the server too.",
        change_id=None, server_version=3, server_json=orjson.dumps(theirs),
        local_json=orjson.dumps(mine), base_json=orjson.dumps(base),
        created_at=datetime(2026, 11, 28, 9, 0, tzinfo=UTC), resolved_at=None,
    )  # fmt: skip


def test_decider_follows_the_servers_routes() -> None:
    assert RESOLVER_ROLES[ReviewRoute.PRESCRIBER] == {"physician"}  # what the words below say
    medication = _conflict("MedicationRequest")
    assert decider_needed(medication, ("nurse",)) == "a physician"
    assert decider_needed(medication, ("physician",)) is None
    assert decider_needed(_conflict("Condition"), ("nurse",)) is None
    assert decider_needed(_conflict("Condition"), ("front_desk",)) == "a nurse or a physician"
    assert decider_needed(_conflict("AllergyIntolerance", "rejected"), ("nurse",)) is None
    assert decider_needed(medication, None) is None  # roles unknown: the server decides


@pytest.mark.parametrize(("role", "may_decide"), [("nurse", False), ("physician", True)])
def test_dialog_lets_only_a_prescriber_decide_a_medication_conflict(
    qtbot, tmp_path: Path, role: str, may_decide: bool
) -> None:
    ws = Workstation.open(tmp_path / "profile", "http://127.0.0.1:9", kdf=FAST_KDF)
    try:
        ctx = UiContext.create(ws)
        ctx.user = UserInfo("someone", (role,), ("loc-main",), None)
        dialog = ConflictReviewDialog(ctx, _conflict("MedicationRequest"))
        qtbot.addWidget(dialog)
        dialog.show()
        buttons = (dialog.theirs_button, dialog.mine_button, dialog.merged_button)
        assert [b.isEnabled() for b in buttons] == [may_decide] * 3
        assert dialog.decider_note.isVisible() is not may_decide
        if not may_decide:
            assert dialog.decider_note.text().startswith("Only a physician can decide")
            assert dialog.table.model().rowCount() > 0  # both versions still shown
            assert dialog.grab().save(str(tmp_path / "nurse-medication-conflict.png"))
    finally:
        ws.close()
