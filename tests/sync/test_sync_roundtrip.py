"""Two real workstations and a real server: push, pull, conflicts, refusals, cursors, scope.

Every test goes over HTTP on 127.0.0.1 to a server with real sign-in, and every
workstation is a real SQLCipher profile driven through `Workstation`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from desktop_sync_support import (
    LOCATION,
    delete_locally,
    local_state,
    seed_charts,
    server_state,
    signed_in,
    strip_meta,
    synced_workstation,
    synthea_patients,
    version_counts,
)
from identity_support import TestUser, make_user
from sqlalchemy import text
from sqlalchemy.orm import Session

from desktop.services.workstation import Workstation
from desktop.store import conflicts, outbox, sync_state
from desktop.sync import engine
from desktop.sync.progress import SyncProgress, SyncReport, read_status
from desktop.sync.push import encode_push
from desktop.sync.retry import RetryPolicy
from shared_models.errors import NetworkUnavailable


@pytest.fixture(scope="module")
def users(secure_server: Any) -> dict[str, TestUser]:
    return {
        name: make_user(secure_server, name, ["physician"], [LOCATION])
        for name in ("dr.ada", "dr.ben")
    }


@pytest.fixture(scope="module")
def charts(secure_server: Any, shared_data: Path) -> Any:
    return seed_charts(secure_server.engine, synthea_patients(shared_data)[:4], goals_per_patient=2)


@pytest.fixture(scope="module")
def ws_a(
    secure_server: Any, users: dict[str, TestUser], tmp_path_factory: Any, charts: Any
) -> Iterator[Workstation]:
    folder = tmp_path_factory.mktemp("ws-a")
    yield from synced_workstation(folder, secure_server.url, users["dr.ada"])


@pytest.fixture(scope="module")
def ws_b(
    secure_server: Any, users: dict[str, TestUser], tmp_path_factory: Any, charts: Any
) -> Iterator[Workstation]:
    folder = tmp_path_factory.mktemp("ws-b")
    yield from synced_workstation(folder, secure_server.url, users["dr.ben"])


@pytest.fixture(autouse=True)
def converged(ws_a: Workstation, ws_b: Workstation) -> Iterator[None]:
    """Each test starts from synced workstations with no open conflicts."""
    for ws in (ws_a, ws_b):
        ws.sync()
        with ws._db().transaction() as conn:
            for record in conflicts.open_conflicts(conn):
                conflicts.mark_resolved(conn, record.conflict_id)
    yield


def _edit(ws: Workstation, resource_type: str, resource_id: str, **changes: Any) -> str:
    resource, version = ws.get_resource(resource_type, resource_id)
    return ws.save_resource({**strip_meta(resource), **changes}, version).change_id


def test_initial_sync_holds_exactly_the_servers_scope(
    secure_server: Any, charts: Any, ws_a: Workstation
) -> None:
    expected = server_state(secure_server.engine, charts.patient_ids)
    assert local_state(ws_a) == expected
    assert sum(1 for key in expected if key[0] == "Patient") == len(charts.patient_ids)
    status = read_status(ws_a._db().connection())
    assert status.online is True and status.pending == 0 and status.last_sync is not None


def test_offline_edits_reach_the_other_workstation(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation
) -> None:
    goal_id, patient_id = charts.goal_ids[0], charts.patient_ids[1]
    _edit(ws_a, "Goal", goal_id, description={"text": "Walk 30 minutes daily"})
    phone = {"system": "phone", "value": "555-0101", "use": "mobile"}
    patient, _ = ws_a.get_resource("Patient", patient_id)
    _edit(ws_a, "Patient", patient_id, telecom=[*patient.get("telecom", []), phone])
    progress = SyncProgress()
    report = engine.run_sync(
        ws_a._db(), ws_a._authed_api(), workstation_id=ws_a.workstation_id, progress=progress
    )
    assert (report.pushed, report.applied, report.conflicts) == (2, 2, 0)
    assert progress.latest().phase == "done" and progress.latest().pushed == 2
    assert ws_a.list_pending_changes() == []
    ws_b.sync()
    assert ws_b.get_resource("Goal", goal_id)[0]["description"]["text"] == "Walk 30 minutes daily"
    assert phone in ws_b.get_resource("Patient", patient_id)[0]["telecom"]
    assert (
        local_state(ws_b)
        == local_state(ws_a)
        == server_state(secure_server.engine, charts.patient_ids)
    )


def test_edits_of_different_elements_merge(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation
) -> None:
    goal_id = charts.goal_ids[1]
    _edit(ws_a, "Goal", goal_id, description={"text": "Lose 2 kg"})
    _edit(ws_b, "Goal", goal_id, note=[{"text": "Patient agrees"}])
    ws_a.sync()
    report = ws_b.sync()
    assert report.merged == 1 and report.conflicts == 0
    merged, version = ws_b.get_resource("Goal", goal_id)
    assert merged["description"]["text"] == "Lose 2 kg" and merged["note"] == [
        {"text": "Patient agrees"}
    ]
    ws_a.sync()
    assert ws_a.get_resource("Goal", goal_id) == (merged, version)


def test_same_element_changed_twice_is_a_stored_conflict(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation
) -> None:
    goal_id = charts.goal_ids[2]
    _edit(ws_a, "Goal", goal_id, description={"text": "Stop smoking"})
    _edit(ws_b, "Goal", goal_id, description={"text": "Reduce smoking"})
    ws_a.sync()
    report = ws_b.sync()
    assert report.conflicts == 1
    [record] = ws_b.list_conflicts()
    assert record.status == "conflict" and record.id == goal_id
    assert orjson.loads(record.local_json or b"null")["description"]["text"] == "Reduce smoking"
    assert orjson.loads(record.server_json or b"null")["description"]["text"] == "Stop smoking"
    assert orjson.loads(record.base_json or b"null")["description"]["text"] == "Goal 0"
    assert record.reason
    # The server's version is the local copy now; the edit lives in the conflict.
    assert ws_b.get_resource("Goal", goal_id)[0]["description"]["text"] == "Stop smoking"
    assert ws_b.status().conflicts == 1 and ws_b.status().pending == 0
    ws_b.resolve_conflict(record.conflict_id, "mine")
    ws_b.sync()
    ws_a.sync()
    assert ws_a.get_resource("Goal", goal_id)[0]["description"]["text"] == "Reduce smoking"


def test_delete_against_update_is_a_conflict(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation
) -> None:
    goal_id = charts.goal_ids[3]
    delete_locally(ws_a, "Goal", goal_id)
    _edit(ws_b, "Goal", goal_id, description={"text": "Keep this goal"})
    ws_b.sync()
    report = ws_a.sync()
    assert report.conflicts == 1
    [record] = ws_a.list_conflicts()
    assert record.local_json is None and record.status == "conflict"
    # the server kept the edited goal; the workstation shows it again
    assert ws_a.get_resource("Goal", goal_id)[0]["description"]["text"] == "Keep this goal"


def test_accepted_delete_reaches_everyone(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation
) -> None:
    goal_id = charts.goal_ids[4]
    delete_locally(ws_a, "Goal", goal_id)
    assert ws_a.sync().applied == 1
    ws_b.sync()
    for ws in (ws_a, ws_b):
        assert ("Goal", goal_id) not in local_state(ws)
    assert ("Goal", goal_id) not in server_state(secure_server.engine)


def test_a_push_answered_but_not_stored_is_not_applied_twice(
    secure_server: Any, charts: Any, ws_a: Workstation
) -> None:
    """The crash window: the server answered, the workstation died before storing it."""
    goal_id = charts.goal_ids[5]
    _edit(ws_a, "Goal", goal_id, description={"text": "Sent twice"})
    before = version_counts(secure_server.engine, "Goal")[goal_id]
    body = encode_push(ws_a.workstation_id, ws_a.list_pending_changes())
    first = orjson.loads(ws_a._authed_api().sync_push(body))
    report = ws_a.sync()  # sends the same changes again
    assert report.applied == 1 and ws_a.list_pending_changes() == []
    assert version_counts(secure_server.engine, "Goal")[goal_id] == before + 1
    again = orjson.loads(ws_a._authed_api().sync_push(body))
    assert again == first


def test_one_invalid_change_is_refused_and_the_others_apply(
    secure_server: Any, charts: Any, ws_a: Workstation
) -> None:
    goal_id, patient_id = charts.goal_ids[6], charts.patient_ids[3]
    _edit(ws_a, "Goal", goal_id, description={"text": "Valid edit"})
    bad: dict[str, Any] = {"resourceType": "Goal", "id": "00000000-0000-4000-8000-000000000001",
           "lifecycleStatus": "active", "description": {"text": "x"}, "startDate": "31/12/2020",
           "subject": {"reference": f"Patient/{patient_id}"}}  # fmt: skip
    with ws_a._db().transaction() as conn:  # as if an older version had saved it unvalidated
        outbox.enqueue(
            conn, resource_type="Goal", resource_id=bad["id"], op="upsert", base_version=None,
            patient_id=patient_id, raw_json=orjson.dumps(bad),
        )  # fmt: skip
    _edit(ws_a, "Goal", charts.goal_ids[7], description={"text": "Also valid"})
    report = ws_a.sync()
    assert (report.applied, report.rejected) == (2, 1)
    [record] = ws_a.list_conflicts()
    assert record.status == "rejected" and record.id == bad["id"]
    assert "Goal.startDate" in record.reason
    assert orjson.loads(record.local_json or b"null") == bad
    assert ws_a.list_pending_changes() == []
    assert ("Goal", bad["id"]) not in server_state(secure_server.engine)


def test_a_forged_cursor_downloads_again_and_converges(
    secure_server: Any, charts: Any, ws_a: Workstation
) -> None:
    with ws_a._db().transaction() as conn:
        sync_state.put(conn, sync_state.CURSOR, "eyJ2IjoxfQ.Zm9yZ2Vk")
    _edit(ws_a, "Goal", charts.goal_ids[0], note=[{"text": "edited before the reset"}])
    ws_a.sync()
    assert ws_a.list_pending_changes() == []
    assert local_state(ws_a) == server_state(secure_server.engine, charts.patient_ids)
    assert sync_state.cursor(ws_a._db().connection()) != "eyJ2IjoxfQ.Zm9yZ2Vk"


def test_one_sync_at_a_time_per_profile(ws_a: Workstation) -> None:
    lock = engine._lock_for(ws_a._db())
    with lock, pytest.raises(engine.SyncInProgress):
        engine.run_sync(ws_a._db(), ws_a._authed_api(), workstation_id=ws_a.workstation_id)


def test_unreachable_server_keeps_everything_and_says_offline(
    charts: Any, ws_a: Workstation, tmp_path: Path
) -> None:
    change_id = _edit(ws_a, "Goal", charts.goal_ids[1], note=[{"text": "offline note"}])
    api = ws_a._authed_api()
    real = api._client.base_url
    api._client.base_url = "http://127.0.0.1:9"  # nothing listens on the discard port
    try:
        with pytest.raises(NetworkUnavailable):
            engine.run_sync(
                ws_a._db(), api, workstation_id=ws_a.workstation_id,
                retry=RetryPolicy(attempts=2, base_delay=0.01),
            )  # fmt: skip
    finally:
        api._client.base_url = real
    assert [e.change_id for e in ws_a.list_pending_changes()] == [change_id]
    assert read_status(ws_a._db().connection()).online is False
    ws_a.sync()
    assert read_status(ws_a._db().connection()).online is True


def _move_away(engine_: Any, patient_ids: list[str]) -> None:
    """The patients' care moves to another clinic (their care-site rows change)."""
    with Session(engine_) as session:
        session.execute(
            text("UPDATE patient_locations SET location_id = 'loc-elsewhere'"
                 " WHERE patient_id = ANY(:p)"),
            {"p": patient_ids},
        )  # fmt: skip
        session.commit()


def _goal_of(ws: Workstation, patient_id: str) -> str:
    return next(
        rid for (rtype, rid), (_, res) in local_state(ws).items()
        if rtype == "Goal" and res["subject"]["reference"] == f"Patient/{patient_id}"
    )  # fmt: skip


def _chart_ids(ws: Workstation, patient_id: str) -> list[str]:
    return [
        rid for (rtype, rid), (_, res) in local_state(ws).items()
        if rid == patient_id
        or (res.get("subject") or {}).get("reference") == f"Patient/{patient_id}"
    ]  # fmt: skip


def test_a_patient_leaving_scope_is_purged_and_a_refused_edit_stays_visible(
    secure_server: Any, charts: Any, ws_a: Workstation
) -> None:
    leaving = charts.patient_ids[0]
    goal_id = _goal_of(ws_a, leaving)
    _edit(ws_a, "Goal", goal_id, note=[{"text": "written while the patient moved"}])
    _move_away(secure_server.engine, [leaving])
    report = ws_a.sync()
    assert report.rejected == 1  # the push comes first: the server no longer lets us write
    assert _chart_ids(ws_a, leaving) == []
    [record] = [c for c in ws_a.list_conflicts() if c.id == goal_id]
    assert record.status == "rejected" and record.reason
    assert orjson.loads(record.local_json or b"null")["note"] == [
        {"text": "written while the patient moved"}
    ]


def test_a_chart_with_an_unsynced_change_goes_to_review_not_to_the_bin(
    secure_server: Any, charts: Any, ws_a: Workstation
) -> None:
    """The patient leaves scope while an edit waits (made after this sync's push)."""
    leaving = charts.patient_ids[2]
    goal_id = _goal_of(ws_a, leaving)
    _move_away(secure_server.engine, [leaving])
    change_id = _edit(ws_a, "Goal", goal_id, note=[{"text": "not on the server yet"}])
    report = SyncReport()
    call = lambda fn: fn()  # noqa: E731 - no retries needed on loopback
    engine._pull(ws_a._db(), ws_a._authed_api(), call, SyncProgress(), report, 100)
    assert report.held_for_review == [leaving]
    assert goal_id in _chart_ids(ws_a, leaving)  # nothing purged while the edit waits
    assert [e.change_id for e in ws_a.list_pending_changes()] == [change_id]
    assert [c.status for c in ws_a.list_conflicts() if c.patient_id == leaving] == ["out_of_scope"]


class _Recorder(SyncProgress):
    """Keeps the snapshot after each stored page, as the GUI's timer would see it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def pulled(self, resources: int, size: int) -> None:
        super().pulled(resources, size)
        self.seen.append(self.latest())


def test_initial_download_knows_its_size_and_time_left(
    secure_server: Any, users: dict[str, TestUser], charts: Any, tmp_path: Path
) -> None:
    ws = signed_in(tmp_path / "fresh", secure_server.url, users["dr.ben"])
    try:
        progress, later = _Recorder(), _Recorder()
        report = engine.run_sync(
            ws._db(), ws._authed_api(), workstation_id=ws.workstation_id,
            progress=progress, page_limit=4,
        )  # fmt: skip
        engine.run_sync(ws._db(), ws._authed_api(), workstation_id=ws.workstation_id,
                        progress=later)  # fmt: skip
    finally:
        ws.close()
    assert later.seen and all(snap.to_pull is None for snap in later.seen)  # not asked again
    assert report.pages == len(progress.seen) > 3
    first, last = progress.seen[0], progress.seen[-1]
    assert first.to_pull is not None and first.to_pull >= report.pulled  # never undercounts
    assert first.fraction is not None and 0 < first.fraction < 1
    assert first.seconds_left is not None and first.seconds_left > 0
    assert last.pulled == report.pulled <= first.to_pull
    fractions = [snap.fraction for snap in progress.seen]
    assert fractions == sorted(fractions)
