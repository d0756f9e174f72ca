"""A push's conflict answer carries the base version, and a replay answers the same way.

The workstation stores a conflict whole from the push answer (server, client
and base versions) instead of listing the review queue to fill in the base;
the answer's base must be the one the queue holds, and the same change sent
again must get the same answer (idempotency), base included.
"""

from __future__ import annotations

from typing import Any

from sync_support import Clinic, SyncClient, conditions_of, current, upsert, write_as_system


def test_conflict_answer_holds_the_base_the_queue_holds_and_replays_the_same(
    server: Any, clinic: Clinic, physician: SyncClient
) -> None:
    condition = conditions_of(clinic, 0)[0]
    version, base = current(server, "Condition", condition["id"])
    write_as_system(server.engine, {**base, "onsetDateTime": "2003-03-03"})
    change = upsert({**base, "onsetDateTime": "2004-04-04"}, version)
    first = physician.push([change])
    [answer] = first.json()["results"]
    assert answer["status"] == "conflict"
    assert answer["resource"]["onsetDateTime"] == "2003-03-03"  # the server's, still current
    assert answer["base_resource"] == base  # the version both sides edited, whole
    listed = physician.http.get("/sync/conflicts", headers=physician.headers).json()
    [entry] = [c for c in listed["conflicts"] if c["id"] == answer["conflict_id"]]
    assert entry["base_resource"] == answer["base_resource"]
    assert entry["client_resource"]["onsetDateTime"] == "2004-04-04"
    again = physician.push([change])
    assert again.json() == first.json()


def test_answers_other_than_conflicts_carry_no_base(
    server: Any, clinic: Clinic, physician: SyncClient
) -> None:
    condition = conditions_of(clinic, 1)[0]
    version, stored = current(server, "Condition", condition["id"])
    [applied] = physician.push([upsert({**stored, "note": [{"text": "seen"}]}, version)]).json()[
        "results"
    ]
    assert applied["status"] == "applied" and applied["base_resource"] is None
