"""Conflict decisions reach the server; refused changes can be discarded; lists stay equal.

Two real workstations (SQLCipher profiles) sign in to a real server on
127.0.0.1. "Offline" is a real connection refused: the workstation is pointed
at a port nobody listens on, then back at the server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from desktop_store_helpers import FAST_KDF
from desktop_sync_support import (
    LOCATION,
    delete_locally,
    free_port,
    seed_charts,
    signed_in,
    strip_meta,
    synced_workstation,
    synthea_patients,
)
from identity_support import TestUser, audit_rows, make_user
from sqlalchemy import text

from desktop.services.conflict_review import conflict_view
from desktop.services.workstation import Workstation
from desktop.store import conflict_decisions, conflicts, outbox, resources
from desktop.store.conflicts import ConflictRecord


@pytest.fixture(scope="module")
def users(secure_server: Any) -> dict[str, TestUser]:
    return {
        name: make_user(secure_server, name, ["physician"], [LOCATION])
        for name in ("dr.cora", "dr.dev")
    }


@pytest.fixture(scope="module")
def charts(secure_server: Any, shared_data: Path) -> Any:
    return seed_charts(secure_server.engine, synthea_patients(shared_data)[:2], goals_per_patient=5)


@pytest.fixture(scope="module")
def ws_a(
    secure_server: Any, users: dict[str, TestUser], tmp_path_factory: Any, charts: Any
) -> Iterator[Workstation]:
    folder = tmp_path_factory.mktemp("ws-a")
    yield from synced_workstation(folder, secure_server.url, users["dr.cora"])


@pytest.fixture(scope="module")
def ws_b(
    secure_server: Any, users: dict[str, TestUser], tmp_path_factory: Any, charts: Any
) -> Iterator[Workstation]:
    folder = tmp_path_factory.mktemp("ws-b")
    yield from synced_workstation(folder, secure_server.url, users["dr.dev"])


@contextmanager
def offline(ws: Workstation) -> Iterator[None]:
    """Every call to the server is refused at the TCP level until the block ends."""
    url = ws.server_url
    ws.server_url, ws._api = f"http://127.0.0.1:{free_port()}", None
    try:
        yield
    finally:
        ws.server_url, ws._api = url, None


def edit(ws: Workstation, resource_type: str, resource_id: str, **changes: Any) -> None:
    resource, version = ws.get_resource(resource_type, resource_id)
    ws.save_resource({**strip_meta(resource), **changes}, version)


def collide(ws_a: Workstation, ws_b: Workstation, goal_id: str) -> ConflictRecord:
    """A and B change the same element; A syncs first, so B's push opens the conflict."""
    edit(ws_a, "Goal", goal_id, description={"text": "Walk daily"})
    edit(ws_b, "Goal", goal_id, description={"text": "Swim twice a week"})
    ws_a.sync()
    assert ws_b.sync().conflicts == 1
    return next(c for c in ws_b.list_conflicts() if c.id == goal_id)


def server_conflict(server: Any, conflict_id: str) -> dict[str, Any]:
    with server.engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, resolution, resolved_by, resolved_version FROM sync_conflicts"
                 " WHERE id = :id"), {"id": conflict_id},
        ).mappings().one()  # fmt: skip
        return dict(row)


def server_goal(server: Any, goal_id: str) -> tuple[int, dict[str, Any]]:
    with server.engine.connect() as conn:
        version, resource = conn.execute(
            text("SELECT version_id, resource FROM resources"
                 " WHERE resource_type = 'Goal' AND id = :id"), {"id": goal_id},
        ).one()  # fmt: skip
        return int(version), dict(resource)


def provenance_for(server: Any, target: str) -> dict[str, Any]:
    with server.engine.connect() as conn:
        found: dict[str, Any] = conn.execute(
            text("SELECT resource FROM resources WHERE resource_type = 'Provenance'"
                 " AND resource->'target' @> CAST(:t AS jsonb)"),
            {"t": orjson.dumps([{"reference": target}]).decode()},
        ).scalar_one()  # fmt: skip
        return found


def test_keep_theirs_closes_the_conflict_on_the_server_and_everywhere(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation, users: Any
) -> None:
    goal_id = charts.goal_ids[0]
    record = collide(ws_a, ws_b, goal_id)
    ws_a.sync()  # the other workstation lists the server's open conflict too
    assert record.conflict_id in [c.conflict_id for c in ws_a.list_conflicts()]
    seen_by_a = next(c for c in ws_a.list_conflicts() if c.conflict_id == record.conflict_id)
    assert "dr.dev" in seen_by_a.reason
    assert conflict_view(seen_by_a).explanation.startswith("Another workstation sent a change")
    assert conflict_view(record).explanation.startswith("You changed")
    assert conflict_view(seen_by_a).from_elsewhere and not conflict_view(record).from_elsewhere

    assert ws_b.resolve_conflict(record.conflict_id, "theirs") == "resolved"

    state = server_conflict(secure_server, record.conflict_id)
    assert (state["status"], state["resolution"], state["resolved_by"]) == (
        "resolved", "keep_server", "dr.dev",
    )  # fmt: skip
    version, goal = server_goal(secure_server, goal_id)
    assert version == state["resolved_version"] and goal["description"]["text"] == "Walk daily"
    provenance = provenance_for(secure_server, f"Goal/{goal_id}/_history/{version}")
    assert provenance["agent"][0]["who"] == {"display": "dr.dev"}
    # The resolved version is in B's cache, the conflict closed there ...
    assert ws_b.get_resource("Goal", goal_id) == (goal, version)
    assert record.conflict_id not in [c.conflict_id for c in ws_b.list_conflicts()]
    # ... and A drops it at its next sync.
    ws_a.sync()
    assert record.conflict_id not in [c.conflict_id for c in ws_a.list_conflicts()]
    assert ws_a.get_resource("Goal", goal_id)[1] == version


def test_a_merged_version_decided_offline_is_sent_at_the_next_sync(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation
) -> None:
    goal_id = charts.goal_ids[1]
    record = collide(ws_a, ws_b, goal_id)
    merged = {**strip_meta(orjson.loads(record.server_json or b"{}")),
              "description": {"text": "Walk daily, swim on Sundays"}}  # fmt: skip
    with offline(ws_b):
        assert ws_b.resolve_conflict(record.conflict_id, "merged", merged) == "queued"
    # Stored durably, still open here and on the server, and the list says why.
    [waiting] = conflict_decisions.pending(ws_b._db().connection())
    assert (waiting.conflict_id, waiting.resolution) == (record.conflict_id, "merged")
    still = next(c for c in ws_b.list_conflicts() if c.conflict_id == record.conflict_id)
    assert "next sync" in still.reason
    assert server_conflict(secure_server, record.conflict_id)["status"] == "open"

    ws_b.sync()

    state = server_conflict(secure_server, record.conflict_id)
    assert (state["status"], state["resolution"]) == ("resolved", "merged")
    version, goal = server_goal(secure_server, goal_id)
    assert goal["description"]["text"] == "Walk daily, swim on Sundays"
    assert ws_b.get_resource("Goal", goal_id)[1] == version
    assert conflict_decisions.pending(ws_b._db().connection()) == []
    assert record.conflict_id not in [c.conflict_id for c in ws_b.list_conflicts()]
    ws_b.sync()  # nothing sent twice
    assert server_goal(secure_server, goal_id)[0] == version


def test_keep_mine_after_someone_else_resolved_goes_through_the_merge(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation
) -> None:
    goal_id = charts.goal_ids[2]
    record = collide(ws_a, ws_b, goal_id)
    ws_a.sync()
    with offline(ws_b):
        assert ws_b.resolve_conflict(record.conflict_id, "mine") == "queued"
    assert ws_a.resolve_conflict(record.conflict_id, "theirs") == "resolved"
    ws_b.sync()  # told "already resolved": B's choice becomes an edit, nothing is lost
    assert record.conflict_id not in [c.conflict_id for c in ws_b.list_conflicts()]
    assert server_conflict(secure_server, record.conflict_id)["resolved_by"] == "dr.cora"
    assert server_goal(secure_server, goal_id)[1]["description"]["text"] == "Swim twice a week"
    assert ws_b.list_pending_changes() == []


def _refused_edit(ws: Workstation, goal_id: str) -> ConflictRecord:
    """An edit the server refuses (invalid date), saved as an older version would have."""
    resource, version = ws.get_resource("Goal", goal_id)
    bad = {**strip_meta(resource), "startDate": "31/12/2020", "description": {"text": "typo"}}
    raw = orjson.dumps(bad)
    with ws._db().transaction() as conn:
        patient_id = resources.put(conn, bad, raw, version_id=version, dirty=True)
        outbox.enqueue(
            conn, resource_type="Goal", resource_id=goal_id, op="upsert", base_version=version,
            patient_id=patient_id, raw_json=raw,
        )  # fmt: skip
    assert ws.sync().rejected == 1
    return next(c for c in ws.list_conflicts() if c.id == goal_id)


def test_discarding_a_refused_change_restores_the_servers_copy(
    secure_server: Any, charts: Any, ws_a: Workstation
) -> None:
    goal_id = charts.goal_ids[3]
    record = _refused_edit(ws_a, goal_id)
    assert record.status == "rejected"
    assert ws_a.get_resource("Goal", goal_id)[0]["description"]["text"] == "typo"

    assert ws_a.resolve_conflict(record.conflict_id, "theirs") == "resolved"

    version, goal = server_goal(secure_server, goal_id)
    assert ws_a.get_resource("Goal", goal_id) == (goal, version)
    assert "startDate" not in goal
    stored = resources.get(ws_a._db().connection(), "Goal", goal_id)
    assert stored is not None and not stored.dirty
    assert record.conflict_id not in [c.conflict_id for c in ws_a.list_conflicts()]


def test_a_discard_decided_offline_restores_the_copy_at_the_next_sync(
    secure_server: Any, charts: Any, ws_a: Workstation
) -> None:
    goal_id = charts.goal_ids[4]
    record = _refused_edit(ws_a, goal_id)
    with offline(ws_a):
        assert ws_a.resolve_conflict(record.conflict_id, "theirs") == "queued"
    assert ws_a.get_resource("Goal", goal_id)[0]["description"]["text"] == "typo"
    ws_a.sync()  # the pull alone would never bring it back: nothing changed on the server
    version, goal = server_goal(secure_server, goal_id)
    assert ws_a.get_resource("Goal", goal_id) == (goal, version)
    assert record.conflict_id not in [c.conflict_id for c in ws_a.list_conflicts()]


def test_discarding_a_refused_new_resource_removes_it(
    secure_server: Any, charts: Any, ws_a: Workstation
) -> None:
    patient_id = charts.patient_ids[0]
    bad: dict[str, Any] = {"resourceType": "Goal", "id": "00000000-0000-4000-8000-00000000d15c",
           "lifecycleStatus": "active", "description": {"text": "x"}, "startDate": "31/12/2020",
           "subject": {"reference": f"Patient/{patient_id}"}}  # fmt: skip
    with ws_a._db().transaction() as conn:
        resources.put(conn, bad, orjson.dumps(bad), version_id=None, dirty=True)
        outbox.enqueue(
            conn, resource_type="Goal", resource_id=bad["id"], op="upsert", base_version=None,
            patient_id=patient_id, raw_json=orjson.dumps(bad),
        )  # fmt: skip
    ws_a.sync()
    record = next(c for c in ws_a.list_conflicts() if c.id == bad["id"])
    assert ws_a.resolve_conflict(record.conflict_id, "theirs") == "resolved"
    assert resources.get(ws_a._db().connection(), "Goal", bad["id"]) is None
    assert conflicts.get(ws_a._db().connection(), record.conflict_id).resolved_at is not None  # type: ignore[union-attr]


def test_a_decision_made_offline_survives_a_restart(
    secure_server: Any, charts: Any, ws_a: Workstation, tmp_path: Path
) -> None:
    user = make_user(secure_server, "dr.eve", ["physician"], [LOCATION])
    profile = tmp_path / "eve"
    eve = signed_in(profile, secure_server.url, user)
    try:
        eve.sync()
        record = collide(ws_a, eve, charts.goal_ids[5])
        with offline(eve):
            assert eve.resolve_conflict(record.conflict_id, "theirs") == "queued"
    finally:
        eve.close()
    again = Workstation.open(profile, secure_server.url, kdf=FAST_KDF)
    try:
        again.sign_in_offline(user.username, user.password)
        again.sync()
        state = server_conflict(secure_server, record.conflict_id)
        assert (state["status"], state["resolved_by"]) == ("resolved", "dr.eve")
        assert again.list_conflicts() == []
    finally:
        again.close()


def test_keeping_my_deletion_deletes_on_the_server_and_here(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation
) -> None:
    goal_id = charts.goal_ids[6]
    edit(ws_a, "Goal", goal_id, description={"text": "Keep this goal"})
    delete_locally(ws_b, "Goal", goal_id)
    ws_a.sync()
    assert ws_b.sync().conflicts == 1
    record = next(c for c in ws_b.list_conflicts() if c.id == goal_id)
    assert record.local_json is None
    assert ws_b.resolve_conflict(record.conflict_id, "mine") == "resolved"
    with secure_server.engine.connect() as conn:
        deleted = conn.execute(
            text("SELECT deleted FROM resources WHERE resource_type = 'Goal' AND id = :id"),
            {"id": goal_id},
        ).scalar_one()
    assert deleted is True
    assert resources.get(ws_b._db().connection(), "Goal", goal_id) is None
    ws_a.sync()
    assert resources.get(ws_a._db().connection(), "Goal", goal_id) is None


def test_the_queue_is_listed_only_when_its_fingerprint_differs(
    secure_server: Any, charts: Any, ws_a: Workstation, ws_b: Workstation
) -> None:
    def listings() -> int:  # each GET /sync/conflicts is audited once
        return len(audit_rows(secure_server, action="sync-conflicts", username="dr.cora"))

    ws_a.sync()
    before = listings()
    ws_a.sync()
    ws_a.sync()
    assert listings() == before  # nothing changed: the pull's fingerprint matched

    record = collide(ws_a, ws_b, charts.goal_ids[7])  # B's push opens it; A has not seen it
    ws_a.sync()  # the server's fingerprint now differs from A's list: A lists the queue
    assert listings() == before + 1
    seen = next(c for c in ws_a.list_conflicts() if c.conflict_id == record.conflict_id)
    assert conflict_view(seen).from_elsewhere and seen.base_json is not None
    ws_a.sync()
    assert listings() == before + 1  # in step again
