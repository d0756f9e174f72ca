"""Push of whole batches: many conflicts stored together, audit per patient naming each change."""

from __future__ import annotations

from typing import Any

from identity_support import audit_rows
from sqlalchemy import text
from sync_support import Clinic, conditions_of, current, signed_in, upsert, write_as_system


def test_a_batch_of_conflicts_is_stored_whole_and_audited_per_patient(
    server: Any, clinic: Clinic
) -> None:
    client = signed_in(server, "physician", ["loc-main"])
    try:
        edited = conditions_of(clinic, 0)[:3] + conditions_of(clinic, 1)[:3]
        changes, bases = [], {}
        for n, condition in enumerate(edited):
            version, stored = current(server, "Condition", condition["id"])
            bases[condition["id"]] = (version, stored)
            write_as_system(server.engine, {**stored, "onsetDateTime": f"2001-01-0{n + 1}"})
            changes.append(upsert({**stored, "onsetDateTime": f"2002-02-0{n + 1}"}, version))
        response = client.push(changes)
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [r["status"] for r in results] == ["conflict"] * len(edited)
        assert len({r["conflict_id"] for r in results}) == len(edited)
        with server.engine.connect() as conn:
            stored_rows = conn.execute(
                text(
                    "SELECT id, resource_id, change_id, base_version, server_version,"
                    " base_resource, server_resource, client_resource, workstation_id"
                    " FROM sync_conflicts WHERE id = ANY(:ids)"
                ),
                {"ids": [r["conflict_id"] for r in results]},
            ).all()
        by_change = {row.change_id: row for row in stored_rows}
        for change, result in zip(changes, results, strict=True):
            row = by_change[change["change_id"]]
            base_version, base = bases[change["id"]]
            assert row.id == result["conflict_id"]
            assert (row.base_version, row.server_version) == (base_version, base_version + 1)
            assert row.base_resource["onsetDateTime"] == base["onsetDateTime"]
            assert row.server_resource["onsetDateTime"].startswith("2001-01-0")
            assert row.client_resource == change["resource"]
            assert row.workstation_id == client.workstation
            # the server version stays current
            assert current(server, "Condition", change["id"])[0] == base_version + 1
        events = audit_rows(server, username=client.user.username, action="sync-conflict")
        assert sorted(e["patient_ids"][0] for e in events) == sorted(clinic.patients[:2])
        named = sorted(c for e in events for c in e["detail"]["conflicts"])
        assert named == sorted(r["conflict_id"] for r in results)
        assert {e["workstation_id"] for e in events} == {client.workstation}
    finally:
        client.close()


def test_a_mixed_batch_is_audited_once_per_patient_and_outcome_naming_every_change(
    server: Any, clinic: Clinic
) -> None:
    client = signed_in(server, "physician", ["loc-main"])
    try:
        mine = conditions_of(clinic, 0)[3:6] + conditions_of(clinic, 1)[3:5]
        changes = []
        for condition in mine:
            version, stored = current(server, "Condition", condition["id"])
            changes.append(upsert({**stored, "note": [{"text": "seen today"}]}, version))
        outside = conditions_of(clinic, 2)[0]  # the satellite's patient: refused
        version, stored = current(server, "Condition", outside["id"])
        changes.append(upsert({**stored, "note": [{"text": "not mine"}]}, version))
        invalid = {**mine[0], "onsetDateTime": "last spring"}
        changes.append(upsert(invalid, current(server, "Condition", mine[0]["id"])[0] + 1))
        response = client.push(changes)
        assert response.status_code == 200, response.text
        statuses = [r["status"] for r in response.json()["results"]]
        assert statuses == ["applied"] * len(mine) + ["rejected", "rejected"]

        updates = audit_rows(server, username=client.user.username, action="update")
        assert sorted(e["patient_ids"][0] for e in updates) == sorted(clinic.patients[:2])
        assert all(e["outcome"] == "success" for e in updates)
        named = {c["change_id"]: c for e in updates for c in e["detail"]["changes"]}
        assert set(named) == {c["change_id"] for c in changes[: len(mine)]}
        for change in changes[: len(mine)]:
            version = current(server, "Condition", change["id"])[0]
            assert named[change["change_id"]]["outcome"] == (
                f"Condition/{change['id']}/_history/{version}"
            )
        refused = audit_rows(server, username=client.user.username, action="sync-push")
        outcomes = {c["change_id"]: e["outcome"] for e in refused for c in e["detail"]["changes"]}
        assert outcomes == {changes[-2]["change_id"]: "denied", changes[-1]["change_id"]: "failure"}
        assert {e["workstation_id"] for e in updates + refused} == {client.workstation}
    finally:
        client.close()
