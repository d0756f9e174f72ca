"""`ehr-server demo` and `ehr-server demo-otp` as a newcomer runs them (real processes).

The fast tests write the demo accounts with the real writer on a real database;
the slow ones run the whole README command on an embedded PostgreSQL, sign in
with the printed password and the `demo-otp` code, and stop it (SIGTERM, or the
desktop window closing).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pyotp
import pytest

from desktop.services.demo_accounts import load_demo_accounts
from sync_server.cli import system_repository
from sync_server.config import Settings
from sync_server.db.engine import make_engine, make_sessionmaker, migrate
from sync_server.services.demo_accounts import ACCOUNTS_FILE, DEMO_PASSWORD, create_demo_accounts
from sync_server.services.demo_seed import seed_demo
from sync_server.services.identity import build_runtime

REPO = Path(__file__).resolve().parents[2]
STARTUP_LIMIT_S = 180  # seeding on a busy 2-core machine; a newcomer's run is ~25 s
STOP_LIMIT_S = 60


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "EHR_DATA_DIR"}}
    return {**env, "PYTHONPATH": str(REPO), **extra}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sync_server.cli", *args],
        env=server_env(), capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip


@pytest.fixture(scope="module")
def demo_data_dir(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A data directory whose demo accounts were made by the real writer on a real database."""
    data_dir = tmp_path_factory.mktemp("demo-data")
    url = create_database()
    engine = make_engine(url)
    try:
        migrate(engine)
        settings = Settings(data_dir=data_dir, database_url=url)
        with make_sessionmaker(engine)() as session:
            seed_demo(system_repository(session, "test"), patients=2)
            assert create_demo_accounts(session, build_runtime(settings), data_dir)
            session.commit()
    finally:
        engine.dispose()
    yield data_dir


def test_the_accounts_file_is_private_and_the_desktop_reads_it(demo_data_dir: Path) -> None:
    path = demo_data_dir / ACCOUNTS_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    accounts = {a.username: a for a in load_demo_accounts(path)}
    assert set(accounts) == {"demo.physician", "demo.nurse", "demo.frontdesk"}
    assert accounts["demo.nurse"].role_label == "Nurse"
    assert accounts["demo.frontdesk"].role_label == "Front desk"
    assert {a.password for a in accounts.values()} == {DEMO_PASSWORD}


def test_demo_otp_prints_the_current_code(demo_data_dir: Path) -> None:
    secrets = {
        a["username"]: a["totp_secret"]
        for a in json.loads((demo_data_dir / ACCOUNTS_FILE).read_text())["accounts"]
    }
    done = cli("demo-otp", "demo.nurse", "--data-dir", str(demo_data_dir))
    assert done.returncode == 0, done.stderr
    code = done.stdout.strip()
    assert len(code) == 6 and code.isdigit()
    assert pyotp.TOTP(secrets["demo.nurse"]).verify(code, valid_window=1)
    assert not pyotp.TOTP(secrets["demo.physician"]).verify(code, valid_window=1)


def test_demo_otp_refuses_a_data_dir_that_is_not_a_demo(
    tmp_path: Path, demo_data_dir: Path
) -> None:
    (tmp_path / "server-secret").write_text("a production data dir")
    refused = cli("demo-otp", "demo.nurse", "--data-dir", str(tmp_path))
    assert refused.returncode == 2 and refused.stdout == ""
    assert "not a demo data directory" in refused.stderr

    unknown = cli("demo-otp", "dr.real", "--data-dir", str(demo_data_dir))
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "not a demo account" in unknown.stderr


# -- the README command, end to end ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {limit_s} s")
        time.sleep(0.2)


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_demo(data_dir: Path, port: int, *flags: str, **env: str) -> subprocess.Popen[bytes]:
    log = (data_dir.parent / f"{data_dir.name}-{port}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "sync_server.cli", "demo", "--data-dir", str(data_dir),
         "--port", str(port), "--patients", "6", *flags],
        env=server_env(**env), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
    )  # fmt: skip


def output_of(data_dir: Path, port: int) -> str:
    return (data_dir.parent / f"{data_dir.name}-{port}.log").read_text(errors="replace")


def assert_stopped_cleanly(process: subprocess.Popen[bytes], data_dir: Path, port: int) -> None:
    output = output_of(data_dir, port)
    assert "embedded PostgreSQL stopped" in output, output[-3000:]
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert not answers(f"http://127.0.0.1:{port}")


@pytest.fixture(scope="module")
def embedded_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for both runs: the second finds the clinic seeded, like a newcomer's rerun."""
    return tmp_path_factory.mktemp("embedded-demo") / "data"


@pytest.mark.slow
def test_demo_no_desktop_serves_signs_in_and_stops_on_sigterm(embedded_demo_dir: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_demo(embedded_demo_dir, port, "--no-desktop")
    try:
        started = time.monotonic()
        wait_for(lambda: answers(url) or process.poll() is not None, STARTUP_LIMIT_S, "healthz")
        assert process.poll() is None, output_of(embedded_demo_dir, port)[-3000:]
        print(f"\nehr-server demo answered /healthz after {time.monotonic() - started:.1f} s")
        output = output_of(embedded_demo_dir, port)
        for shown in ("demo.physician", "demo.nurse", "demo.frontdesk", DEMO_PASSWORD, "demo-otp"):
            assert shown in output
        assert "Start the desktop with: ehr-desktop --server" in output

        code = cli("demo-otp", "demo.physician", "--data-dir", str(embedded_demo_dir))
        assert code.returncode == 0, code.stderr
        login = httpx.post(
            f"{url}/auth/login",
            json={"username": "demo.physician", "password": DEMO_PASSWORD,
                  "otp": code.stdout.strip(), "workstation_id": "readme-test"},
            timeout=30,
        )  # fmt: skip
        assert login.status_code == 200, login.text
        assert login.json()["token_type"] == "Bearer"
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=STOP_LIMIT_S)
    assert returncode == 128 + signal.SIGTERM
    assert_stopped_cleanly(process, embedded_demo_dir, port)


def desktop_child(server_pid: int) -> int | None:
    found = subprocess.run(
        ["pgrep", "-P", str(server_pid), "-f", "desktop.cli"], capture_output=True, text=True
    )
    return int(found.stdout.split()[0]) if found.stdout.strip() else None


@pytest.mark.slow
def test_demo_opens_the_desktop_and_stops_when_it_closes(
    embedded_demo_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    process = start_demo(
        embedded_demo_dir, port,
        DISPLAY=":0", QT_QPA_PLATFORM="offscreen", XDG_DATA_HOME=str(tmp_path),
        PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring",
    )  # fmt: skip
    try:
        wait_for(
            lambda: desktop_child(process.pid) is not None or process.poll() is not None,
            STARTUP_LIMIT_S,
            "the desktop app",
        )
        child = desktop_child(process.pid)
        assert child is not None, output_of(embedded_demo_dir, port)[-3000:]
        assert answers(f"http://127.0.0.1:{port}")
        time.sleep(5)  # the desktop keeps running: its profile opened, its window is up
        assert desktop_child(process.pid) == child, output_of(embedded_demo_dir, port)[-3000:]
        os.kill(child, signal.SIGTERM)  # the window closes
        returncode = process.wait(timeout=STOP_LIMIT_S)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=STOP_LIMIT_S)
    assert returncode == 0, output_of(embedded_demo_dir, port)[-3000:]
    assert "Opening the desktop app" in output_of(embedded_demo_dir, port)
    assert_stopped_cleanly(process, embedded_demo_dir, port)
