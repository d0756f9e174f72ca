"""Free-slot search on the server: 3 locations, 30 practitioners, a year of slots.

Figure: p50/p95 latency of `GET /scheduling/free-slots` over real HTTP on
loopback (bearer sign-in, access check, audit, JSON), for a practitioner, a
location (any practitioner there) and both, from random days of the year.
Raw limit beside it: the same SQL run directly on the database connection.
Printed, never asserted.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest
from sqlalchemy.orm import Session

TESTS = Path(__file__).resolve().parent.parent
for folder in ("server", "desktop", "scheduling"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))

from identity_support import bearer, login, make_user, system_repository  # noqa: E402
from scheduling_support import server_fixtures  # noqa: E402

from shared_models.fhir_constants import TIMEZONE_EXTENSION  # noqa: E402
from shared_models.scheduling import ScheduleTemplate, slot_resource, slot_times  # noqa: E402
from sync_server.services import scheduling  # noqa: E402
from sync_server.services.fhir_repository import ResourceWrite  # noqa: E402

pytestmark = [pytest.mark.benchmark, pytest.mark.timeout(1800)]
server_for_new_database = server_fixtures().server_for_new_database

ZONES = ("America/New_York", "America/Chicago", "America/Denver")
PRACTITIONERS_PER_LOCATION = 10
REQUESTS = 300
TEMPLATE = ScheduleTemplate(
    frozenset({1, 2, 3, 4, 5}), clock(8), clock(12), 20, breaks=((clock(10), clock(10, 20)),)
)


def _seed(engine: Any, shared_data: Path, first: date) -> dict[str, list[str]]:
    bundle = next((shared_data / "fhir-synthea" / "bundles-2019").glob("practitionerInformation*"))
    people = [e["resource"] for e in json.loads(bundle.read_text())["entry"]]
    people = [p for p in people if p["resourceType"] == "Practitioner"][
        : 3 * PRACTITIONERS_PER_LOCATION
    ]
    writes: list[dict[str, Any]] = []
    plan: dict[str, list[str]] = {"locations": [], "practitioners": []}
    slots = 0
    with Session(engine) as session:
        repo = system_repository(session)
        for n, zone in enumerate(ZONES):
            location = f"bench-loc-{n}"
            plan["locations"].append(location)
            writes.append(
                {
                    "resourceType": "Location",
                    "id": location,
                    "name": f"Site {n}",
                    "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": zone}],
                }
            )
            for person in people[
                n * PRACTITIONERS_PER_LOCATION : (n + 1) * PRACTITIONERS_PER_LOCATION
            ]:
                plan["practitioners"].append(person["id"])
                schedule = f"bench-sched-{person['id'][:12]}"
                writes += [
                    person,
                    {
                        "resourceType": "Schedule",
                        "id": schedule,
                        "active": True,
                        "actor": [
                            {"reference": f"Practitioner/{person['id']}"},
                            {"reference": f"Location/{location}"},
                        ],
                    },
                ]
                times = slot_times(TEMPLATE, first, first + timedelta(days=364), ZoneInfo(zone))
                for i, (start, end) in enumerate(times):
                    slot = slot_resource(schedule, start, end)
                    if i % 3 == 0:
                        slot["status"] = "busy"  # a third of the year already booked
                    writes.append(slot)
                    slots += 1
        for offset in range(0, len(writes), 2000):
            chunk = writes[offset : offset + 2000]
            repo.write_many([ResourceWrite(r["resourceType"], r["id"], r) for r in chunk])
            session.commit()
    plan["slots"] = [str(slots)]
    return plan


def test_free_slot_search_p95(
    server_for_new_database: Any, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = date.today()
    with server_for_new_database(data_dir=tmp_path_factory.mktemp("bench-data")) as server:
        server.app.dependency_overrides.clear()
        began = time.perf_counter()
        plan = _seed(server.engine, shared_data, first)
        seeded = time.perf_counter() - began
        user = make_user(server, "bench.desk", ["front_desk"], plan["locations"])
        rng = random.Random(8)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            client.headers.update(bearer(login(client, user)["access_token"]))
            latencies: list[float] = []
            raw: list[float] = []
            url = server.engine.url.render_as_string(hide_password=False)
            conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
            for n in range(REQUESTS):
                day = first + timedelta(days=rng.randrange(350))
                start = datetime.combine(day, clock(0), UTC).isoformat()
                params: dict[str, Any] = {"start": start, "count": 20}
                kind = n % 3
                location = rng.choice(plan["locations"])
                if kind != 1:
                    params["practitioner"] = f"Practitioner/{rng.choice(plan['practitioners'])}"
                if kind != 0:
                    params["location"] = f"Location/{location}"
                t0 = time.perf_counter()
                response = client.get("/scheduling/free-slots", params=params)
                latencies.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, response.text
                schedules = [
                    r[0]
                    for r in conn.execute(
                        "SELECT resource_id FROM search_reference WHERE resource_type = 'Schedule'"
                        " AND param = 'actor' AND target_id = %s",
                        (location,),
                    )
                ]
                t1 = time.perf_counter()
                conn.execute(
                    scheduling._FREE_SLOTS_SQL,
                    {
                        "start": datetime.fromisoformat(start),
                        "end": datetime.fromisoformat(start) + timedelta(days=400),
                        "schedules": schedules,
                        "count": 20,
                    },
                ).fetchall()
                raw.append((time.perf_counter() - t1) * 1000)
            conn.close()
    p95 = statistics.quantiles(latencies, n=20)[18]
    raw95 = statistics.quantiles(raw, n=20)[18]
    print(
        f"\nfree-slot search: {plan['slots'][0]} slots, 3 locations, "
        f"{len(plan['practitioners'])} practitioners (seeded in {seeded:.0f} s)"
        f"\n  HTTP p50 {statistics.median(latencies):.1f} ms, p95 {p95:.1f} ms"
        f" over {REQUESTS} requests"
        f"\n  raw limit: the same SQL on one connection p50 {statistics.median(raw):.2f} ms, "
        f"p95 {raw95:.2f} ms"
    )
