"""`ehr-server create-user` and `ehr-server audit verify` on a real PostgreSQL."""

from __future__ import annotations

import io
import stat
from collections.abc import Callable
from pathlib import Path

import psycopg
import pyotp
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from sync_server.cli import main
from sync_server.config import Settings
from sync_server.db.engine import make_engine, migrate
from sync_server.services.authentication import authenticate
from sync_server.services.identity import build_runtime

PASSWORD = "Cli-created-password-77"


def test_create_user_then_sign_in_and_verify_the_audit_chain(
    create_database: Callable[[], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = create_database()
    engine = make_engine(url, pool_size=1)
    migrate(engine)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    secret_file = tmp_path / "totp.txt"
    data_dir = str(tmp_path / "data")
    argv = ["create-user", "--data-dir", data_dir, "--username", "dr.cli", "--role", "physician",
            "--location", "loc-1", "loc-2", "--password-stdin",
            "--totp-secret-out", str(secret_file)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    secret = secret_file.read_text().strip()
    assert secret not in out and PASSWORD not in out
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600

    runtime = build_runtime(Settings(data_dir=Path(data_dir), database_url=url))
    with Session(engine) as session:
        user = authenticate(
            session, runtime, username="dr.cli", password=PASSWORD,
            otp=pyotp.TOTP(secret).now(), workstation_id=None, source_ip=None,
        )  # fmt: skip
        assert user.location_ids == ["loc-1", "loc-2"] and user.roles == ["physician"]
        session.commit()

    assert main(["audit", "verify", "--data-dir", data_dir]) == 0
    assert "intact: 2 events" in capsys.readouterr().out  # user-create and login

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE audit_events SET username = 'someone.else' WHERE pos = 1")
    assert main(["audit", "verify", "--data-dir", data_dir]) == 1
    assert "BROKEN at event 1" in capsys.readouterr().out
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 1
    engine.dispose()


def test_create_user_refuses_weak_password_and_missing_secret_file(
    create_database: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = create_database()
    engine = make_engine(url, pool_size=1)
    migrate(engine)
    engine.dispose()
    monkeypatch.setenv("DATABASE_URL", url)
    base = ["create-user", "--data-dir", str(tmp_path), "--username", "n", "--role", "nurse",
            "--password-stdin"]  # fmt: skip
    assert main(base) == 2  # no --totp-secret-out while MFA is required
    monkeypatch.setattr("sys.stdin", io.StringIO("weak\n"))
    assert main([*base, "--totp-secret-out", str(tmp_path / "s")]) == 1
    assert not (tmp_path / "s").exists()
