"""The pipelined push: batches go out in outbox order, each answer stored with its batch.

The next batch is sent once the server has answered the previous one, while
that one's answers are stored; these tests drive the engine with small batches
so a few edits make several batches, over real HTTP to a real server, and
check the outcome equals what one batch at a time gives: every change answered
once, versions in order, the workstation equal to the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from desktop_sync_support import (
    LOCATION,
    local_state,
    seed_charts,
    server_state,
    strip_meta,
    synced_workstation,
    synthea_patients,
    version_counts,
)
from identity_support import make_user

from desktop.services.workstation import Workstation
from desktop.store import outbox, resources
from desktop.sync import engine
from desktop.sync.progress import SyncReport


@pytest.fixture(scope="module")
def charts(secure_server: Any, shared_data: Path) -> Any:
    return seed_charts(secure_server.engine, synthea_patients(shared_data)[:2], goals_per_patient=4)


@pytest.fixture(scope="module")
def ws(secure_server: Any, tmp_path_factory: Any, charts: Any) -> Iterator[Workstation]:
    user = make_user(secure_server, "dr.pipeline", ["physician"], [LOCATION])
    yield from synced_workstation(tmp_path_factory.mktemp("ws"), secure_server.url, user)


def _sync(ws: Workstation, batch_size: int) -> SyncReport:
    return engine.run_sync(
        ws._db(), ws._authed_api(), workstation_id=ws.workstation_id, batch_size=batch_size
    )


def _edit(ws: Workstation, goal_id: str, text: str, element: str = "description") -> None:
    resource, version = ws.get_resource("Goal", goal_id)
    value: Any = [{"text": text}] if element == "note" else {"text": text}
    ws.save_resource({**strip_meta(resource), element: value}, version)


def test_small_batches_apply_in_outbox_order_and_converge(
    secure_server: Any, charts: Any, ws: Workstation
) -> None:
    goals = charts.goal_ids
    before = version_counts(secure_server.engine, "Goal")
    for n, goal_id in enumerate(goals[:5]):
        _edit(ws, goal_id, f"pipelined edit {n}")
    # a later batch, the same resource, another element: merged on top of the first edit
    _edit(ws, goals[0], "a note on top of the first edit", element="note")
    report = _sync(ws, batch_size=2)  # 6 changes: 3 batches, the next sent while one is stored
    assert report.pushed == 6 and report.conflicts == report.rejected == 0
    assert report.applied + report.merged == 6
    assert ws.list_pending_changes() == []
    after = version_counts(secure_server.engine, "Goal")
    assert after[goals[0]] == before[goals[0]] + 2  # both edits, in order, each once
    assert all(after[g] == before[g] + 1 for g in goals[1:5])
    server = server_state(secure_server.engine, charts.patient_ids)
    both = server[("Goal", goals[0])][1]
    assert both["description"] == {"text": "pipelined edit 0"}
    assert both["note"] == [{"text": "a note on top of the first edit"}]
    assert local_state(ws) == server


def test_a_later_refused_change_in_the_batch_keeps_the_local_edit_on_screen(
    secure_server: Any, charts: Any, ws: Workstation
) -> None:
    """Two changes of one resource in one batch: the first applies, the second is refused.

    The server's answer to the first must not replace the local copy: the later
    (refused) edit stays on screen, unsynced, until a person decides.
    """
    goal_id, patient_id = charts.goal_ids[6], charts.patient_ids[1]
    _edit(ws, goal_id, "valid edit")
    resource, version = ws.get_resource("Goal", goal_id)
    # another text than the first edit (a conflict), and not a FHIR date: refused whole
    bad = {**strip_meta(resource), "description": {"text": "other"}, "startDate": "31/12/2020"}
    with ws._db().transaction() as conn:  # as if an older version had saved it unvalidated
        resources.put(conn, bad, orjson.dumps(bad), version_id=version, dirty=True)
        outbox.enqueue(
            conn, resource_type="Goal", resource_id=goal_id, op="upsert", base_version=version,
            patient_id=patient_id, raw_json=orjson.dumps(bad),
        )  # fmt: skip
    report = _sync(ws, batch_size=500)
    assert (report.applied, report.rejected) == (1, 1)
    stored = resources.get(ws._db().connection(), "Goal", goal_id)
    assert stored is not None and stored.dirty
    assert orjson.loads(stored.json)["startDate"] == "31/12/2020"
    [refused] = [c for c in ws.list_conflicts() if c.id == goal_id]
    assert refused.status == "rejected" and "Goal.startDate" in refused.reason
