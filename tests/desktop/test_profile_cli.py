"""The profile across processes and the `ehr-desktop` headless commands (real subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from desktop_store_helpers import FAST_KDF, PASSWORD, enroll, keychain_env, synthea_resources

from desktop.services.workstation import Workstation
from desktop.store.database import ChartDatabase
from desktop.store.errors import DatabaseDamaged, ProfileInUse
from desktop.store.profile import ProfileLayout

REPO = Path(__file__).resolve().parents[2]
USER = "nurse.joy"


def run_cli(args: list[str], keychain: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **keychain_env(keychain), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "desktop.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def profile(tmp_path: Path, shared_data: Path) -> Path:
    path = tmp_path / "profile"
    enroll(path, USER, resources=synthea_resources(shared_data, 1)[0])
    return path


def test_second_process_is_refused_clearly(profile: Path, temp_keychain: Path) -> None:
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(USER, PASSWORD)
        ws.search_patients("a")
        other = run_cli(["status", "--profile", str(profile)], temp_keychain)
        assert other.returncode == 3
        assert ProfileInUse.user_message in other.stderr
        assert "Traceback" not in other.stderr
        # The first process keeps working, nothing corrupted.
        assert ws.status().pending == 0
    released = run_cli(["status", "--profile", str(profile)], temp_keychain)
    assert released.returncode == 0, released.stderr
    assert "locked: true" in released.stdout


def test_same_process_second_open_is_refused(profile: Path) -> None:
    with Workstation.open(profile, kdf=FAST_KDF), pytest.raises(ProfileInUse):
        Workstation.open(profile, kdf=FAST_KDF)


def test_status_signed_in_offline(profile: Path, temp_keychain: Path) -> None:
    out = run_cli(
        ["status", "--profile", str(profile), "--user", USER, "--password-stdin"],
        temp_keychain,
        PASSWORD + "\n",
    )
    assert out.returncode == 0, out.stderr
    assert f"user: {USER}" in out.stdout and "pending_changes: 0" in out.stdout
    wrong = run_cli(
        ["status", "--profile", str(profile), "--user", USER, "--password-stdin"],
        temp_keychain,
        "nope\n",
    )
    assert wrong.returncode == 3 and "password is not correct" in wrong.stderr


def test_rekey_rotates_the_key_and_keeps_every_keyslot(profile: Path, temp_keychain: Path) -> None:
    enroll(profile, "dr.house", "another password")  # a second user on the workstation
    layout = ProfileLayout(profile)
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(USER, PASSWORD)
        before = ws.search_patients("a")
    old_envelope = layout.db_key_path.read_bytes()
    old_keys = _db_key(layout, USER, PASSWORD)
    out = run_cli(
        ["rekey", "--profile", str(profile), "--user", USER, "--password-stdin"],
        temp_keychain,
        PASSWORD + "\n",
    )
    assert out.returncode == 0, out.stderr
    assert layout.db_key_path.read_bytes() != old_envelope
    assert not layout.db_key_path.with_name("database.key.next").exists()
    new_key = _db_key(layout, USER, PASSWORD)
    assert new_key != old_keys
    with pytest.raises(DatabaseDamaged):
        ChartDatabase(layout.db_path, old_keys)
    for user, password in ((USER, PASSWORD), ("dr.house", "another password")):
        with Workstation.open(profile, kdf=FAST_KDF) as ws:
            ws.sign_in_offline(user, password)
            assert ws.search_patients("a") == before


def _db_key(layout: ProfileLayout, user: str, password: str) -> bytes:
    from desktop.store.key_files import KeyFiles
    from desktop.store.profile import ensure_profile

    keys = KeyFiles(layout, ensure_profile(layout), FAST_KDF)
    return keys.unlock_offline(user, password).db_key


def test_interrupted_rekey_is_finished_at_next_sign_in(profile: Path) -> None:
    """Crash after `PRAGMA rekey` but before the new envelope replaced the old one."""
    from desktop.store.key_files import KeyFiles
    from desktop.store.profile import ensure_profile

    layout = ProfileLayout(profile)
    keys = KeyFiles(layout, ensure_profile(layout), FAST_KDF)
    unlocked = keys.unlock_offline(USER, PASSWORD)
    new_key = keys.begin_rotation(unlocked.profile_key)
    db = ChartDatabase(layout.db_path, unlocked.db_key)
    db.rekey(new_key)
    db.close()  # "crash": database.key still holds the old key
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(USER, PASSWORD)
        assert ws.search_patients("a")
    assert keys.unlock_offline(USER, PASSWORD).db_key == new_key
    assert not layout.db_key_path.with_name("database.key.next").exists()


def test_gui_entry_is_lazy() -> None:
    """Headless commands never import Qt."""
    code = (
        "import sys, desktop.cli; desktop.cli.build_parser();"
        "print(any(m.startswith('PySide6') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "False"
