"""50 concurrent booking requests for 10 slots through two `ehr-server serve` processes.

Both servers serve one PostgreSQL database. Exactly 10 bookings win; the 40
others are answered 409 with alternatives; the database holds one booking per
slot and each slot is busy.

Bookings of one slot queue on a per-slot lock, and the losers are refused by
the check that follows it, before anything is written. Each refusal is audited
as a failed write on the audit trail's own small pool, so a burst of them does
not drain the request pool.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pyotp
import pytest
from identity_support import PASSWORD, system_repository
from scheduling_support import next_monday, seed_scheduling_clinic
from server_fixtures import free_port
from sqlalchemy import text
from sqlalchemy.orm import Session

from shared_models.scheduling import ScheduleTemplate
from sync_server.config import Settings
from sync_server.db.engine import make_engine, migrate
from sync_server.services import scheduling, users
from sync_server.services.identity import build_runtime

#: `ehr-server` as the console script runs it (works from a source tree too).
SERVER = [sys.executable, "-m", "sync_server.cli"]
REPO = Path(__file__).resolve().parents[2]
REQUESTS, SLOTS = 50, 10


def _start(port: int, env: dict[str, str], data_dir: Path) -> subprocess.Popen[bytes]:
    """`ehr-server serve` on `port`; its log goes to a file (a full pipe would block it)."""
    log = (data_dir / f"server-{port}.log").open("wb")
    return subprocess.Popen(
        [
            *SERVER,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
        ],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


@pytest.fixture(scope="module")
def two_servers(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory, shared_data: Path
) -> Iterator[dict[str, Any]]:
    url = create_database()
    engine = make_engine(url)
    migrate(engine)
    data_dir = tmp_path_factory.mktemp("server-data")
    clinic = seed_scheduling_clinic(SimpleNamespace(engine=engine), shared_data)
    schedule = clinic.schedules[clinic.practitioners[0]]
    day = next_monday(3)
    template = ScheduleTemplate.from_json(
        {"weekdays": [1], "start": "08:00", "end": "11:20", "slot_minutes": 20}
    )
    runtime = build_runtime(Settings(data_dir=data_dir, database_url=None))
    with Session(engine) as session:
        repo = system_repository(session)
        scheduling.generate_slots(
            repo=repo, schedule_id=schedule, template=template, first_day=day, last_day=day
        )
        _, enrolment = users.create_user(
            session,
            runtime.keys,
            runtime.security,
            username="desk.race",
            password=PASSWORD,
            roles=["front_desk"],
            location_ids=["loc-east"],
        )
        session.commit()
    env = {**os.environ, "DATABASE_URL": url}
    env.pop("EHR_DATA_DIR", None)
    ports = [free_port(), free_port()]
    processes = [_start(port, env, data_dir) for port in ports]
    try:
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for server_url, process in zip(urls, processes, strict=True):
            _wait_ready(server_url, process)
        yield {
            "urls": urls,
            "engine": engine,
            "clinic": clinic,
            "totp": enrolment.secret,
            "logs": sorted(data_dir.glob("server-*.log")),
        }
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        engine.dispose()


@pytest.mark.slow
def test_fifty_concurrent_bookings_for_ten_slots_make_exactly_ten(
    two_servers: dict[str, Any],
) -> None:
    urls, engine, clinic = two_servers["urls"], two_servers["engine"], two_servers["clinic"]
    login = httpx.post(
        f"{urls[0]}/auth/login",
        json={
            "username": "desk.race",
            "password": PASSWORD,
            "workstation_id": "ws-race",
            "otp": pyotp.TOTP(two_servers["totp"]).now(),
        },
        timeout=30,
    )
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    with engine.connect() as conn:
        slots = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT id FROM resources WHERE resource_type = 'Slot'"
                    " ORDER BY resource->>'start'"
                )
            )
        ]
    assert len(slots) == SLOTS
    start = threading.Barrier(REQUESTS, timeout=60)
    clients = [httpx.Client(base_url=u, headers=headers, timeout=120) for u in urls]

    def book(n: int) -> int:
        body = {"slot": slots[n % SLOTS], "patient": f"Patient/{clinic.patients[n % 4]}"}
        client = clients[n % 2]
        start.wait()
        return client.post("/scheduling/book", json=body).status_code

    began = time.monotonic()
    with ThreadPoolExecutor(REQUESTS) as pool:
        codes = list(pool.map(book, range(REQUESTS)))
    elapsed = time.monotonic() - began
    for client in clients:
        client.close()
    print(f"\n{REQUESTS} concurrent bookings through 2 processes in {elapsed:.2f} s")
    if codes.count(201) != SLOTS or 500 in codes:  # the servers' logs say why (no PHI)
        for log in two_servers["logs"]:
            print(log.read_text()[-3000:])
    assert sorted(set(codes)) == [201, 409], codes
    assert codes.count(201) == SLOTS and codes.count(409) == REQUESTS - SLOTS
    with engine.connect() as conn:
        bookings = conn.execute(text("SELECT slot_id FROM slot_bookings")).fetchall()
        held = conn.execute(
            text(
                "SELECT resource->'slot'->0->>'reference' FROM resources"
                " WHERE resource_type = 'Appointment' AND NOT deleted"
                " AND resource->>'status' = 'booked' AND resource ? 'slot'"
            )
        ).fetchall()
        busy = conn.execute(
            text(
                "SELECT count(*) FROM resources WHERE resource_type = 'Slot'"
                " AND resource->>'status' = 'busy'"
            )
        ).scalar()
        refused = conn.execute(
            text(
                "SELECT count(*) FROM audit_events WHERE action = 'create'"
                " AND outcome = 'failure' AND resource_type = 'Appointment'"
            )
        ).scalar()
    assert sorted(r[0] for r in bookings) == sorted(slots)
    assert refused == REQUESTS - SLOTS  # every refusal is in the audit trail
    assert sorted(r[0] for r in held) == sorted(f"Slot/{s}" for s in slots)
    assert busy == SLOTS
