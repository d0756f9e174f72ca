"""The pull cursor never skips a change that commits late, with real concurrent writers.

A writer that took a lower sequence number but commits after a higher one is
the case a plain `seq > cursor` feed gets wrong; these tests build it on
purpose, then let threads of writers (holding transactions open, some
rolling back) race threads of pullers over HTTP: every committed version
must reach every puller exactly once, and nothing rolled back may.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

from identity_support import system_repository
from sqlalchemy import text
from sqlalchemy.orm import Session
from sync_support import Clinic, SyncClient, signed_in


def observation(patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": str(uuid.uuid4()),
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": random.randint(50, 120), "unit": "/min"},
    }


def seq_of(session: Session, resource_id: str) -> int:
    return int(
        session.execute(
            text("SELECT seq FROM resource_versions WHERE id = :i"), {"i": resource_id}
        ).scalar_one()
    )


def test_a_lower_sequence_committed_late_is_delivered_not_skipped(
    server: Any,
    clinic: Clinic,
    nurse: SyncClient,
) -> None:
    _, cursor = nurse.pull_all()
    early = Session(server.engine)  # takes its transaction id first ...
    late = Session(server.engine)  # ... this one takes the lower sequence number
    try:
        early.execute(text("SELECT pg_current_xact_id()"))
        first, second = observation(clinic.patients[0]), observation(clinic.patients[0])
        system_repository(late).create(first)
        first_id = late.execute(text("SELECT max(seq) FROM resource_versions")).scalar_one()
        system_repository(early).create(second)
        early.commit()
        page, cursor = nurse.pull_all(cursor)
        delivered = [(c["resourceType"], c["seq"]) for c in page]
        assert len(delivered) == 1 and delivered[0][1] > first_id  # the higher seq came first
        late.commit()
        page, cursor = nurse.pull_all(cursor)
        assert [c["seq"] for c in page] == [first_id]  # the lower one is not skipped
        assert nurse.pull_all(cursor)[0] == []
    finally:
        early.close()
        late.close()


def test_concurrent_writers_and_pullers_see_every_change_exactly_once(
    server: Any,
    clinic: Clinic,
) -> None:
    writers, transactions, pullers = 6, 12, 2
    committed: set[tuple[str, int]] = set()
    rolled_back: set[str] = set()
    lock = threading.Lock()
    done = threading.Event()
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(transactions):
                with Session(server.engine) as session:
                    repo = system_repository(session)
                    made = []
                    for _ in range(rng.randint(1, 3)):
                        made.append(repo.create(observation(clinic.patients[rng.randint(0, 1)])))
                        time.sleep(rng.random() * 0.01)  # hold the sequence number open
                    if rng.random() < 0.15:
                        session.rollback()
                        with lock:
                            rolled_back.update(m.stored.id for m in made)
                        continue
                    session.commit()
                    with lock:
                        committed.update((m.stored.id, m.stored.version_id) for m in made)
        except BaseException as exc:
            errors.append(exc)

    clients = [signed_in(server, "nurse", ["loc-main"]) for _ in range(pullers)]
    cursors = [client.pull_all()[1] for client in clients]
    seen: list[list[tuple[str, int]]] = [[] for _ in clients]

    def pull(index: int) -> None:
        client, cursor = clients[index], cursors[index]
        try:
            quiet = 0
            while quiet < 2:  # after the writers stop: drain until two empty pulls
                finished = done.is_set()
                page, cursor = client.pull_all(cursor, limit=rng_limit(index))
                seen[index] += [
                    (c["id"], c["versionId"]) for c in page if c["resourceType"] == "Observation"
                ]
                quiet = quiet + 1 if finished and not page else 0
                time.sleep(0.005)
        except BaseException as exc:
            errors.append(exc)

    def rng_limit(index: int) -> int:
        return 3 + index * 4

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    readers = [threading.Thread(target=pull, args=(n,)) for n in range(pullers)]
    for thread in threads + readers:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    for thread in readers:
        thread.join(timeout=120)
    for client in clients:
        client.close()
    assert not errors, errors
    assert committed and rolled_back
    for observed in seen:
        assert len(observed) == len(set(observed)), "a change was delivered twice"
        assert set(observed) == committed, "a change was skipped or a rolled-back one delivered"
