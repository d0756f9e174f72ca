"""Property: three workstations and the server converge, and no edit is lost or doubled.

Hypothesis draws random interleavings of offline edits (conflicting ones:
the same element two ways; mergeable ones: list additions), deletes and syncs
on shared Synthea patients. After everyone syncs twice:

- every workstation holds exactly the server's current state of its scope;
- every edit ever made is in a current version, in the history, or in a
  stored conflict (on the server, and on the workstation that made it);
- nothing is duplicated: every server version is explained by exactly one
  accepted change (push log), and versions run 1..n without gaps.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from desktop_sync_support import (
    LOCATION,
    SeededCharts,
    delete_locally,
    local_state,
    seed_charts,
    server_state,
    signed_in,
    strip_meta,
    synthea_patients,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from identity_support import make_user
from sqlalchemy import text

from desktop.services.workstation import Workstation
from shared_models.errors import NotFound

KINDS = ("goal_text", "goal_note", "goal_delete", "birth_date", "phone", "sync")
_counter = itertools.count(1)


@dataclass
class Edit:
    ws: int
    change_id: str
    resource_type: str
    resource_id: str
    kind: str
    #: A string only this edit wrote (None for a delete).
    marker: str | None


@pytest.fixture(scope="module")
def cluster(secure_server: Any, shared_data: Path, tmp_path_factory: Any) -> Iterator[Any]:
    users = [make_user(secure_server, f"dr.{n}", ["physician"], [LOCATION]) for n in "xyz"]
    stations = [
        signed_in(tmp_path_factory.mktemp(f"ws{i}"), secure_server.url, user)
        for i, user in enumerate(users)
    ]
    yield secure_server, stations, synthea_patients(shared_data)
    for ws in stations:
        ws.close()


def _apply(
    ws: Workstation, index: int, kind: str, target: int, charts: SeededCharts
) -> Edit | None:
    n = next(_counter)
    if kind.startswith("goal"):
        rtype, rid = "Goal", charts.goal_ids[target % len(charts.goal_ids)]
    else:
        rtype, rid = "Patient", charts.patient_ids[target % len(charts.patient_ids)]
    try:
        resource, version = ws.get_resource(rtype, rid)
    except NotFound:  # deleted here already
        return None
    resource = strip_meta(resource)
    marker: str | None
    if kind == "goal_delete":
        return Edit(index, delete_locally(ws, rtype, rid), rtype, rid, kind, None)
    if kind == "goal_text":
        marker = f"goal-text-{n}"
        resource["description"] = {"text": marker}
    elif kind == "goal_note":
        marker = f"goal-note-{n}"
        resource["note"] = [*resource.get("note", []), {"text": marker}]
    elif kind == "birth_date":
        marker = (date(1800, 1, 1) + timedelta(days=n)).isoformat()
        resource["birthDate"] = marker
    else:
        marker = f"555-{n:07d}"
        resource["telecom"] = [*resource.get("telecom", []), {"system": "phone", "value": marker}]
    change = ws.save_resource(resource, version)
    return Edit(index, change.change_id, rtype, rid, kind, marker)


def _server_holds(engine: Any, edit: Edit) -> bool:
    """The edit is in a current version, the history, or a stored conflict on the server."""
    with engine.connect() as conn:
        if edit.marker is None:  # a delete: a tombstone, or a conflict naming this change
            return bool(
                conn.execute(
                    text("SELECT EXISTS (SELECT 1 FROM resource_versions WHERE resource_type = :t"
                         " AND id = :i AND deleted) OR EXISTS (SELECT 1 FROM sync_conflicts"
                         " WHERE change_id = :c AND client_deleted)"),
                    {"t": edit.resource_type, "i": edit.resource_id, "c": edit.change_id},
                ).scalar()
            )  # fmt: skip
        like = f"%{edit.marker}%"
        return bool(
            conn.execute(
                text("SELECT EXISTS (SELECT 1 FROM resource_versions WHERE resource_type = :t"
                     " AND id = :i AND resource::text LIKE :m) OR EXISTS (SELECT 1 FROM"
                     " sync_conflicts WHERE change_id = :c AND client_resource::text LIKE :m)"),
                {"t": edit.resource_type, "i": edit.resource_id, "c": edit.change_id, "m": like},
            ).scalar()
        )  # fmt: skip


def _conflicted(engine: Any, change_ids: list[str]) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT change_id FROM sync_push_log WHERE change_id = ANY(:c)"
                 " AND status = 'conflict'"),
            {"c": change_ids},
        ).all()  # fmt: skip
    return {r[0] for r in rows}


def _versions_explained(engine: Any, keys: set[tuple[str, str]]) -> None:
    """Every version after the first was written by exactly one accepted change."""
    with engine.connect() as conn:
        for rtype, rid in keys:
            versions = [
                r[0]
                for r in conn.execute(
                    text("SELECT version_id FROM resource_versions WHERE resource_type = :t"
                         " AND id = :i ORDER BY version_id"),
                    {"t": rtype, "i": rid},
                )
            ]  # fmt: skip
            assert versions == list(range(1, len(versions) + 1)), (rtype, versions)
            accepted = {
                r[0]
                for r in conn.execute(
                    text("SELECT version_id FROM sync_push_log WHERE resource_type = :t AND"
                         " resource_id = :i AND status IN ('applied', 'merged')"),
                    {"t": rtype, "i": rid},
                )
            }  # fmt: skip
            assert set(versions) - {1} <= accepted, (rtype, versions, accepted)


def _check(
    server: Any, stations: list[Workstation], charts: SeededCharts, edits: list[Edit]
) -> None:
    for ws in stations + stations:
        ws.sync()
    expected = server_state(server.engine)
    for ws in stations:
        assert ws.list_pending_changes() == []
        assert local_state(ws) == expected
    lost = [e for e in edits if not _server_holds(server.engine, e)]
    assert lost == []
    conflicted = _conflicted(server.engine, [e.change_id for e in edits])
    event(f"edits: {min(len(edits), 10) // 5 * 5}+, conflicts: {min(len(conflicted), 3)}+")
    for edit in edits:
        if edit.change_id in conflicted:
            mine = [c for c in stations[edit.ws].list_conflicts() if c.change_id == edit.change_id]
            assert len(mine) == 1, edit
            if edit.marker is not None:
                assert mine[0].local_json is not None and edit.marker.encode() in mine[0].local_json
    keys = {("Goal", g) for g in charts.goal_ids} | {("Patient", p) for p in charts.patient_ids}
    _versions_explained(server.engine, keys)


operations = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(KINDS), st.integers(0, 3)),
    min_size=6,
    max_size=16,
)


def _run(cluster: Any, ops: list[tuple[int, str, int]]) -> None:
    server, stations, templates = cluster
    charts = seed_charts(server.engine, templates[:2], goals_per_patient=2)
    for ws in stations:
        ws.sync()
    edits = []
    for index, kind, target in ops:
        if kind == "sync":
            stations[index].sync()
        elif (edit := _apply(stations[index], index, kind, target, charts)) is not None:
            edits.append(edit)
    _check(server, stations, charts, edits)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_three_workstations_converge_and_lose_nothing(cluster: Any, ops: Any) -> None:
    _run(cluster, ops)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(KINDS), st.integers(0, 3)),
                    max_size=40))  # fmt: skip
def test_three_workstations_converge_long_runs(cluster: Any, ops: Any) -> None:
    _run(cluster, ops)
