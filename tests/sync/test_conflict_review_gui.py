"""The conflict review screen settles decisions with the server (pytest-qt, offscreen).

Two real workstations on a real server (127.0.0.1) make a conflict; the
clinician opens it from the worklist, picks fields for a merged version and
saves: the server's conflict is resolved with a Provenance naming them, and
the other workstation drops it at its next sync. A refused change discarded
from the same screen shows the server's copy again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from desktop_sync_support import LOCATION, seed_charts, signed_in, strip_meta, synthea_patients
from identity_support import TestUser, make_user
from PySide6.QtCore import Qt
from sqlalchemy import text

from desktop.services.workstation import Workstation
from desktop.store import outbox, resources
from desktop.ui.context import UiContext
from desktop.ui.worklist import Worklist

pytestmark = pytest.mark.gui
WAIT = 20_000


@pytest.fixture(scope="module")
def charts(secure_server: Any, shared_data: Path) -> Any:
    return seed_charts(secure_server.engine, synthea_patients(shared_data)[:1], goals_per_patient=2)


@pytest.fixture(scope="module")
def pair(
    secure_server: Any, tmp_path_factory: Any, charts: Any
) -> Iterator[tuple[Workstation, Workstation]]:
    users: list[TestUser] = [
        make_user(secure_server, name, ["physician"], [LOCATION]) for name in ("dr.gui", "dr.far")
    ]
    here = signed_in(tmp_path_factory.mktemp("here"), secure_server.url, users[0])
    there = signed_in(tmp_path_factory.mktemp("there"), secure_server.url, users[1])
    for ws in (here, there):
        ws.sync()
    yield here, there
    here.close()
    there.close()


@pytest.fixture
def worklist(qtbot: Any, pair: tuple[Workstation, Workstation]) -> Iterator[Worklist]:
    ctx = UiContext.create(pair[0])
    widget = Worklist(ctx)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    ctx.shutdown()


def edit(ws: Workstation, goal_id: str, **changes: Any) -> None:
    resource, version = ws.get_resource("Goal", goal_id)
    ws.save_resource({**strip_meta(resource), **changes}, version)


def open_review(qtbot: Any, worklist: Worklist, kind: str) -> Any:
    worklist.refresh()
    qtbot.waitUntil(lambda: any(i.kind == kind for i in worklist.model.records), timeout=WAIT)
    item = next(i for i in worklist.model.records if i.kind == kind)
    assert item.conflict_id is not None
    worklist.review = None
    worklist.open_review(item.conflict_id)
    qtbot.waitUntil(lambda: worklist.review is not None, timeout=WAIT)
    return worklist.review


def test_a_merged_version_saved_in_the_review_resolves_the_servers_conflict(
    qtbot: Any, secure_server: Any, charts: Any, pair: Any, worklist: Worklist
) -> None:
    here, there = pair
    goal_id = charts.goal_ids[0]
    edit(there, goal_id, description={"text": "Lose 5 kg"}, lifecycleStatus="on-hold")
    edit(here, goal_id, description={"text": "Lose 3 kg by summer"})
    there.sync()
    assert here.sync().conflicts == 1
    there.sync()
    assert len(there.list_conflicts()) == 1  # the other workstation sees the open conflict

    review = open_review(qtbot, worklist, "conflict")
    rows = [d.path for d in review.model.diffs]
    description = rows.index("description.text")
    assert review.model.diffs[description].mine == "Lose 3 kg by summer"
    assert review.model.diffs[description].theirs == "Lose 5 kg"
    review.table.setFocus()
    review.table.setCurrentIndex(review.model.index(description, 0))
    if "description.text" not in review.model.use_mine:
        qtbot.keyClick(review.table, Qt.Key.Key_Space)
    assert "description.text" in review.model.use_mine
    qtbot.mouseClick(review.merged_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: review.outcome is not None, timeout=WAIT)
    assert review.outcome == "resolved"

    with secure_server.engine.connect() as conn:
        status, resolution, by, version = conn.execute(
            text("SELECT status, resolution, resolved_by, resolved_version FROM sync_conflicts"
                 " WHERE resource_id = :id"), {"id": goal_id},
        ).one()  # fmt: skip
        goal = conn.execute(
            text("SELECT resource FROM resources WHERE resource_type = 'Goal' AND id = :id"),
            {"id": goal_id},
        ).scalar_one()
        provenance = conn.execute(
            text("SELECT resource FROM resources WHERE resource_type = 'Provenance'"
                 " AND resource->'target' @> CAST(:t AS jsonb)"),
            {"t": orjson.dumps([{"reference": f"Goal/{goal_id}/_history/{version}"}]).decode()},
        ).scalar_one()  # fmt: skip
    assert (status, resolution, by) == ("resolved", "merged", "dr.gui")
    assert (goal["description"]["text"], goal["lifecycleStatus"]) == ("Lose 3 kg by summer",
                                                                      "on-hold")  # fmt: skip
    assert provenance["agent"][0]["who"] == {"display": "dr.gui"}
    assert here.get_resource("Goal", goal_id)[1] == version
    qtbot.waitUntil(lambda: not any(i.kind == "conflict" for i in worklist.model.records),
                    timeout=WAIT)  # fmt: skip
    there.sync()
    assert there.list_conflicts() == []
    assert there.get_resource("Goal", goal_id)[0]["description"]["text"] == "Lose 3 kg by summer"


def test_discarding_a_refused_change_in_the_review_shows_the_servers_copy(
    qtbot: Any, secure_server: Any, charts: Any, pair: Any, worklist: Worklist
) -> None:
    here, _ = pair
    goal_id = charts.goal_ids[1]
    resource, version = here.get_resource("Goal", goal_id)
    bad = {**strip_meta(resource), "startDate": "31/12/2020", "description": {"text": "typo"}}
    with here._db().transaction() as conn:  # saved unvalidated, as an older version could
        patient_id = resources.put(conn, bad, orjson.dumps(bad), version_id=version, dirty=True)
        outbox.enqueue(
            conn, resource_type="Goal", resource_id=goal_id, op="upsert", base_version=version,
            patient_id=patient_id, raw_json=orjson.dumps(bad),
        )  # fmt: skip
    assert here.sync().rejected == 1

    review = open_review(qtbot, worklist, "refused")
    assert "Discard" in review.theirs_button.text()
    qtbot.mouseClick(review.theirs_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: review.outcome is not None, timeout=WAIT)

    assert here.get_resource("Goal", goal_id)[0] == resource
    assert here.get_resource("Goal", goal_id)[1] == version
    qtbot.waitUntil(lambda: worklist.model.records == [], timeout=WAIT)
