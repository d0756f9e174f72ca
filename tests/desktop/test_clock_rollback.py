"""Setting the workstation clock back neither stretches nor reopens the offline sign-in window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from desktop_store_helpers import FAST_KDF, PASSWORD, enroll

from desktop.services.workstation import Workstation
from desktop.store import clock_guard
from desktop.store.database import ChartDatabase
from desktop.store.errors import NoOfflineSignIn
from desktop.store.key_files import KeyFiles
from desktop.store.profile import ProfileLayout, ensure_profile

USER = "nurse.joy"


def _remember_time(profile: Path, when: datetime) -> None:
    """What the store records when the workstation was last used at `when`."""
    layout = ProfileLayout(profile)
    keys = KeyFiles(layout, ensure_profile(layout), FAST_KDF).unlock_offline(USER, PASSWORD)
    db = ChartDatabase(layout.db_path, keys.db_key)
    try:
        with db.transaction() as conn:
            clock_guard.observe(conn, when)
    finally:
        db.close()


def test_sign_in_offline_records_the_time_and_locking_keeps_it(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    enroll(profile, USER)
    before = datetime.now(UTC)
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(USER, PASSWORD)
    layout = ProfileLayout(profile)
    keys = KeyFiles(layout, ensure_profile(layout), FAST_KDF).unlock_offline(USER, PASSWORD)
    db = ChartDatabase(layout.db_path, keys.db_key)
    try:
        seen = clock_guard.high_water(db.connection())
    finally:
        db.close()
    assert seen is not None and before <= seen <= datetime.now(UTC)


def test_clock_set_back_by_days_refuses_offline_sign_in(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    enroll(profile, USER, last_online=datetime.now(UTC) - timedelta(days=2))
    # The workstation was used three days from "now": its clock has since been set back.
    _remember_time(profile, datetime.now(UTC) + timedelta(days=3))
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        with pytest.raises(NoOfflineSignIn) as refused:
            ws.sign_in_offline(USER, PASSWORD)
        assert "clock is earlier" in refused.value.user_message
        assert "IT support" in refused.value.user_message
        assert ws.status().user is None and ws.status().locked


def test_window_is_measured_from_the_latest_time_seen(tmp_path: Path) -> None:
    """A step back within the drift tolerance still cannot buy extra offline minutes."""
    profile = tmp_path / "profile"
    enroll(profile, USER, last_online=datetime.now(UTC) - timedelta(days=7, minutes=-2))
    _remember_time(profile, datetime.now(UTC) + timedelta(minutes=5))  # past the window's end
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        with pytest.raises(NoOfflineSignIn) as refused:
            ws.sign_in_offline(USER, PASSWORD)
        assert "ended on" in refused.value.user_message


def test_small_clock_correction_is_tolerated(tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    enroll(profile, USER)
    _remember_time(profile, datetime.now(UTC) + timedelta(minutes=3))
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        assert not ws.sign_in_offline(USER, PASSWORD).online
