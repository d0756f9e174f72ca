"""Fault injection with real processes: kill -9 the syncing workstation, kill the server.

The workstation process is the real headless command (`ehr-desktop sync`, run
as `python -m desktop.cli sync`) on a real SQLCipher profile; it is killed with
SIGKILL at random points of its run. The server is a real `ehr-server serve`
process on its own PostgreSQL database, killed with SIGKILL while a push is in
flight and started again on the same port. Afterwards: zero lost and zero
duplicated changes, and the workstation holds exactly the server's state.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from desktop_store_helpers import FAST_KDF, keychain_env
from desktop_sync_support import (
    LOCATION,
    SeededCharts,
    ServerProcess,
    create_user_on,
    goal,
    local_state,
    seed_charts,
    server_state,
    signed_in,
    strip_meta,
    synthea_patients,
    version_counts,
)
from identity_support import PASSWORD, TestUser, make_user
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from desktop.services.workstation import Workstation
from desktop.sync import engine as sync_engine
from desktop.sync.progress import SyncProgress
from desktop.sync.retry import RetryPolicy
from shared_models.errors import NetworkUnavailable
from sync_server.db.engine import make_engine, migrate

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Ledger:
    """Every change made in a test, to prove afterwards that each landed exactly once."""

    created: set[str] = field(default_factory=set)
    #: goal id -> notes added to it locally
    notes: dict[str, list[str]] = field(default_factory=dict)


def _edit_offline(
    profile: Path, user: TestUser, charts: SeededCharts, ledger: Ledger, n: int
) -> None:
    """Queue `n` new goals and `n // 3` note additions on the profile (offline sign-in)."""
    with Workstation.open(profile, None, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(user.username, PASSWORD)
        for i in range(n):
            patient = charts.patient_ids[i % len(charts.patient_ids)]
            item = goal(patient, f"created offline {uuid.uuid4().hex[:8]}")
            ws.save_resource(item, None)
            ledger.created.add(item["id"])
        for i in range(n // 3):
            goal_id = charts.goal_ids[i % len(charts.goal_ids)]
            resource, version = ws.get_resource("Goal", goal_id)
            note = f"note {uuid.uuid4().hex[:8]}"
            resource = strip_meta(resource)
            resource["note"] = [*resource.get("note", []), {"text": note}]
            ws.save_resource(resource, version)
            ledger.notes.setdefault(goal_id, []).append(note)


def _remote_writes(engine: Engine, charts: SeededCharts, n: int) -> None:
    seed_charts_goals = [goal(charts.patient_ids[i % len(charts.patient_ids)], f"remote {i}")
                         for i in range(n)]  # fmt: skip
    from identity_support import system_repository

    with Session(engine) as session:
        repo = system_repository(session)
        for item in seed_charts_goals:
            repo.write_version("Goal", item["id"], item)
        session.commit()


def _assert_exactly_once(engine: Engine, ws: Workstation, ledger: Ledger) -> None:
    assert ws.list_pending_changes() == [] and ws.list_conflicts() == []
    counts = version_counts(engine, "Goal")
    assert {g: counts.get(g) for g in ledger.created} == dict.fromkeys(ledger.created, 1)
    current = server_state(engine)
    for goal_id, notes in ledger.notes.items():
        held = [n["text"] for n in current[("Goal", goal_id)][1].get("note", [])]
        assert sorted(held) == sorted(notes), goal_id  # each note once, none missing
        assert counts[goal_id] == 1 + len(notes), goal_id  # one version per edit
    assert local_state(ws) == current


# -- kill -9 the workstation ------------------------------------------------------------


@pytest.fixture(scope="module")
def kill_setup(secure_server: Any, shared_data: Path, tmp_path_factory: Any) -> Any:
    user = make_user(secure_server, "dr.kill", ["physician"], [LOCATION])
    charts = seed_charts(
        secure_server.engine, synthea_patients(shared_data)[:3], goals_per_patient=3
    )
    profile = tmp_path_factory.mktemp("ws-kill")
    with signed_in(profile, secure_server.url, user) as ws:
        ws.sync()
    return secure_server, user, charts, profile


def _sync_process(
    url: str, profile: Path, user: TestUser, keychain: Path
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "desktop.cli", "sync", "--profile", str(profile),
               "--server", url, "--user", user.username, "--password-stdin"]  # fmt: skip
    return _spawn(command, keychain)


def _spawn(command: list[str], keychain: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **keychain_env(keychain)}
    read_end, write_end = os.pipe()  # the password goes in through stdin, as for a person
    os.write(write_end, (PASSWORD + "\n").encode())
    os.close(write_end)
    try:
        return subprocess.Popen(
            command, cwd=REPO, env=env, stdin=read_end,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
    finally:
        os.close(read_end)


#: A process that imports the desktop once, then forks one child per sync: each child
#: is a real workstation process (its own profile lock, SQLCipher connection and HTTP
#: client) that the test kills with SIGKILL; the fork spares 20 interpreter starts.
ZYGOTE = """
import os, sys
from desktop.services.workstation import Workstation
profile, url, user = sys.argv[1:4]
password = sys.stdin.readline().rstrip("\\n")
for _ in sys.stdin:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ws = Workstation.open(profile, url)
            ws.sign_in_offline(user, password)
            print(f"ready {os.getpid()}", flush=True)
            ws.sync()
            ws.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(f"exit {pid} {status}", flush=True)
"""


class Zygote:
    def __init__(self, url: str, profile: Path, user: TestUser, keychain: Path) -> None:
        env = {**os.environ, **keychain_env(keychain)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, str(profile), url, user.username],
            cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        self._send(PASSWORD)

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def _read(self) -> list[str]:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().decode().split()

    def start_sync(self) -> int:
        """Fork a syncing child; returns its pid once it has signed in."""
        self._send("go")
        word, pid = self._read()
        assert word == "ready", word
        return int(pid)

    def wait(self) -> int:
        """The child's wait status (0: finished its sync)."""
        word, _, status = self._read()
        assert word == "exit"
        return int(status)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _sync_command(url: str, profile: Path, user: TestUser, keychain: Path) -> None:
    """`ehr-desktop sync` to the end; it must succeed."""
    proc = _sync_process(url, profile, user, keychain)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"sync complete" in out


def _kill_runs(kill_setup: Any, keychain: Path, kills: int, seed: int) -> dict[str, int]:
    """Sync with random work queued, SIGKILL at a random moment, until `kills` kills landed."""
    server, user, charts, profile = kill_setup
    rng = random.Random(seed)
    ledger = Ledger()
    zygote = Zygote(server.url, profile, user, keychain)
    try:
        _edit_offline(profile, user, charts, ledger, 30)  # calibrate: how long a sync takes here
        zygote.start_sync()
        started = time.monotonic()
        assert zygote.wait() == 0
        span = time.monotonic() - started
        outcomes = {"killed": 0, "finished": 0}
        # A sync may end before its kill lands (the calibration run was slower):
        # it then counts as finished, and more runs follow, up to five per kill.
        while outcomes["killed"] < kills and sum(outcomes.values()) < kills * 5:
            _edit_offline(profile, user, charts, ledger, rng.randint(3, 30))
            _remote_writes(server.engine, charts, rng.randint(0, 30))
            pid = zygote.start_sync()
            time.sleep(rng.uniform(0.0, 0.8 * span))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            status = zygote.wait()
            outcomes["killed" if os.WIFSIGNALED(status) else "finished"] += 1
            assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0
    finally:
        zygote.close()
    _sync_command(server.url, profile, user, keychain)  # the headless command finishes the job
    with Workstation.open(profile, None, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(user.username, PASSWORD)
        _assert_exactly_once(server.engine, ws, ledger)
    return outcomes


def test_kill_9_of_the_syncing_workstation_loses_and_duplicates_nothing(
    kill_setup: Any, module_keychain: Path
) -> None:
    outcomes = _kill_runs(kill_setup, module_keychain, kills=20, seed=20261128)
    print(f"kill -9 runs: {outcomes}")
    assert outcomes["killed"] == 20, outcomes


@pytest.mark.slow
def test_kill_9_a_hundred_times(kill_setup: Any, module_keychain: Path) -> None:
    outcomes = _kill_runs(kill_setup, module_keychain, kills=100, seed=4)
    print(f"kill -9 runs: {outcomes}")
    assert outcomes["killed"] == 100, outcomes


def test_status_command_prints_online_pending_and_conflicts(
    kill_setup: Any, module_keychain: Path
) -> None:
    server, user, _, profile = kill_setup
    env = {**os.environ, **keychain_env(module_keychain)}
    command = [sys.executable, "-m", "desktop.cli", "status", "--profile", str(profile),
               "--server", server.url, "--user", user.username, "--password-stdin"]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, env=env, input=(PASSWORD + "\n").encode(), capture_output=True,
        timeout=60, check=True,
    )  # fmt: skip
    lines = dict(line.split(": ", 1) for line in done.stdout.decode().splitlines())
    assert lines["online"] == "online" and lines["last_sync"] != "never"
    assert lines["pending_changes"].isdigit() and lines["open_conflicts"].isdigit()


# -- kill -9 the server during a push ----------------------------------------------------


@pytest.fixture(scope="module")
def server_process(create_database: Any, tmp_path_factory: Any) -> Iterator[ServerProcess]:
    url = create_database()
    engine = make_engine(url)
    migrate(engine)
    data_dir = tmp_path_factory.mktemp("server-data")
    server = ServerProcess.on(url, engine, data_dir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        engine.dispose()


def test_server_killed_in_the_middle_of_a_push(
    server_process: ServerProcess, shared_data: Path, tmp_path: Path
) -> None:
    server = server_process
    user = create_user_on(server, "dr.restart")
    charts = seed_charts(server.engine, synthea_patients(shared_data)[:3], goals_per_patient=3)
    profile = tmp_path / "ws"
    with signed_in(profile, server.url, user) as ws:
        ws.sync()
    ledger = Ledger()
    _edit_offline(profile, user, charts, ledger, 300)  # four push batches of 100
    progress = SyncProgress()
    failures: list[BaseException] = []
    with Workstation.open(profile, server.url, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(user.username, PASSWORD)

        def run() -> None:
            try:
                sync_engine.run_sync(
                    ws._db(), ws._authed_api(), workstation_id=ws.workstation_id,
                    progress=progress, retry=RetryPolicy(attempts=60, base_delay=0.2, max_delay=1),
                    batch_size=100,
                )  # fmt: skip
            except BaseException as exc:
                failures.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        deadline = time.monotonic() + 60
        while progress.latest().pushed < 100 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(random.uniform(0.0, 0.05))  # the second batch is on the wire now
        assert progress.latest().phase == "push", progress.latest()
        server.kill()
        time.sleep(0.5)
        server.start()
        worker.join(timeout=120)
        assert not worker.is_alive()
        if failures:  # the restart outlasted the retries (a loaded machine): sync again, as
            assert [type(f) for f in failures] == [NetworkUnavailable]  # a person would
            run()
            assert len(failures) == 1, failures
        with server.engine.connect() as conn:
            logged = conn.execute(text("SELECT count(*) FROM sync_push_log")).scalar()
        total = len(ledger.created) + sum(len(v) for v in ledger.notes.values())
        assert logged == total
        _assert_exactly_once(server.engine, ws, ledger)
    assert progress.latest().phase == "done"
