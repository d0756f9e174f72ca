"""Offline sign-in and what goes wrong with it: each failure is clear and loses nothing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import keyring
import pytest
from desktop_store_helpers import (
    FAST_KDF,
    PASSWORD,
    SyntheaPatient,
    days_ago,
    enroll,
    synthea_resources,
)

from desktop.services.workstation import Workstation
from desktop.store import device_secret, keyslots
from desktop.store.errors import (
    DeviceSecretMissing,
    KeyslotDamaged,
    NoOfflineSignIn,
    WrongPassword,
)
from desktop.store.key_files import KeyFiles
from desktop.store.keyslots import SlotClaims
from desktop.store.profile import ProfileLayout, ensure_profile
from shared_models.errors import AuthenticationFailed, ClinicError

USER = "nurse.joy"


@pytest.fixture(scope="module")
def synthea(shared_data: Path) -> tuple[list[dict[str, Any]], list[SyntheaPatient]]:
    return synthea_resources(shared_data, 2)


@pytest.fixture
def profile(tmp_path: Path, synthea) -> Path:
    path = tmp_path / "profile"
    enroll(path, USER, resources=synthea[0])
    return path


def _files(root: Path) -> dict[str, bytes]:
    """Every file's bytes, but the lock file (created by opening the profile)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != "profile.lock"
    }


def _still_readable(profile: Path, patient: SyntheaPatient) -> None:
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(USER, PASSWORD)
        assert ws.search_patients(patient.mrn)[0].patient_id == patient.id


def _assert_clear(error: ClinicError) -> None:
    message = error.user_message
    assert message and "Traceback" not in message and len(message) < 300
    assert message != ClinicError.user_message


def test_wrong_password_is_refused_and_changes_nothing(profile: Path, synthea) -> None:
    before = _files(profile / "keys")
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        with pytest.raises(WrongPassword) as err:
            ws.sign_in_offline(USER, PASSWORD + "x")
        assert isinstance(err.value, AuthenticationFailed)
        _assert_clear(err.value)
        assert ws.is_locked
    assert _files(profile / "keys") == before
    _still_readable(profile, synthea[1][0])


def test_never_signed_in_here_needs_online(profile: Path) -> None:
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        status = ws.offline_sign_in_status("dr.who")
        assert not status.possible and "online" in status.reason
        with pytest.raises(NoOfflineSignIn) as err:
            ws.sign_in_offline("dr.who", PASSWORD)
        _assert_clear(err.value)


def test_expired_offline_window(tmp_path: Path, synthea) -> None:
    profile = tmp_path / "old"
    enroll(profile, USER, last_online=days_ago(8), offline_days=7, resources=synthea[0][:20])
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        status = ws.offline_sign_in_status(USER)
        assert not status.possible and status.valid_until is not None
        assert "ended" in status.reason and "online" in status.reason
        with pytest.raises(NoOfflineSignIn) as err:
            ws.sign_in_offline(USER, PASSWORD)
        assert err.value.user_message == status.reason
        assert ws.is_locked


def test_offline_window_open(tmp_path: Path, synthea) -> None:
    profile = tmp_path / "recent"
    enroll(profile, USER, last_online=days_ago(6.5), offline_days=7, resources=synthea[0][:20])
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        assert ws.offline_sign_in_status(USER).possible
        result = ws.sign_in_offline(USER, PASSWORD)
        assert not result.online and result.user.roles == ("nurse",)


def test_window_cannot_be_extended_by_editing_the_keyslot(tmp_path: Path, synthea) -> None:
    profile = tmp_path / "edited"
    enroll(profile, USER, last_online=days_ago(30), offline_days=7, resources=synthea[0][:20])
    slot_path = ProfileLayout(profile).user_slot_path(USER)
    outer = json.loads(slot_path.read_bytes())
    outer["slot"]["header"]["claims"]["last_online_signin"] = days_ago(0).isoformat()
    slot_path.write_text(json.dumps(outer))
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        assert not ws.offline_sign_in_status(USER).possible
        with pytest.raises(KeyslotDamaged) as err:
            ws.sign_in_offline(USER, PASSWORD)
        assert "damaged" in err.value.user_message


def test_edit_with_the_device_secret_still_does_not_open(tmp_path: Path, synthea) -> None:
    """Even someone holding the keychain entry cannot re-date a slot: the claims are AAD."""
    profile = tmp_path / "insider"
    enroll(profile, USER, last_online=days_ago(30), offline_days=7)
    info = ensure_profile(ProfileLayout(profile))
    secret = device_secret.load(info.profile_id)
    assert secret is not None
    slot_path = ProfileLayout(profile).user_slot_path(USER)
    outer = json.loads(slot_path.read_bytes())
    outer["slot"]["header"]["claims"]["last_online_signin"] = days_ago(0).isoformat()
    forged = keyslots._mac(
        secret, keyslots.orjson.dumps(outer["slot"], option=keyslots.orjson.OPT_SORT_KEYS)
    )
    outer["mac"] = forged
    with pytest.raises(WrongPassword):
        keyslots.unwrap_for_user(json.dumps(outer).encode(), PASSWORD, secret)


def test_tampered_keyslot_is_reported_and_left_in_place(profile: Path, synthea) -> None:
    slot_path = ProfileLayout(profile).user_slot_path(USER)
    blob = bytearray(slot_path.read_bytes())
    outer = json.loads(blob)
    ct = bytearray(base64.b64decode(outer["slot"]["ct"]))
    ct[0] ^= 1
    outer["slot"]["ct"] = base64.b64encode(bytes(ct)).decode()
    slot_path.write_text(json.dumps(outer))
    tampered = slot_path.read_bytes()
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        with pytest.raises(KeyslotDamaged) as err:
            ws.sign_in_offline(USER, PASSWORD)
        _assert_clear(err.value)
        assert "online" in err.value.user_message
    assert slot_path.read_bytes() == tampered  # kept for inspection, not deleted


def test_garbage_keyslot_is_damaged_not_a_crash(profile: Path) -> None:
    ProfileLayout(profile).user_slot_path(USER).write_bytes(b"\x00not json")
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        assert not ws.offline_sign_in_status(USER).possible
        with pytest.raises(KeyslotDamaged):
            ws.sign_in_offline(USER, PASSWORD)


def test_missing_keychain_entry(profile: Path) -> None:
    info = ensure_profile(ProfileLayout(profile))
    device_secret.delete(info.profile_id)
    before = _files(profile)
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        status = ws.offline_sign_in_status(USER)
        assert not status.possible and "keychain" in status.reason
        with pytest.raises(DeviceSecretMissing) as err:
            ws.sign_in_offline(USER, PASSWORD)
        assert "keychain" in err.value.user_message
    assert _files(profile) == before  # nothing deleted or rewritten


def test_online_repair_after_missing_keychain_sets_old_files_aside(profile: Path) -> None:
    """What an accepted online sign-in does when the keychain entry is gone."""
    layout = ProfileLayout(profile)
    info = ensure_profile(layout)
    old_db = layout.db_path.read_bytes()
    device_secret.delete(info.profile_id)
    claims = SlotClaims(USER, info.profile_id, days_ago(0).isoformat(), 7, 15, ("nurse",), (), None)
    unlocked = KeyFiles(layout, info, FAST_KDF).unlock_after_online_sign_in(PASSWORD, claims)
    assert unlocked.notice and "keychain" in unlocked.notice
    aside = list(layout.quarantine_dir.glob("*-keychain-missing/chart.db"))
    assert len(aside) == 1 and aside[0].read_bytes() == old_db
    assert not layout.db_path.exists()  # a fresh database is downloaded after this
    assert keyring.get_password(device_secret.SERVICE, f"device-secret:{info.profile_id}")
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        ws.sign_in_offline(USER, PASSWORD)
        assert ws.search_patients("a") == []


def test_truncated_database_is_set_aside(profile: Path) -> None:
    layout = ProfileLayout(profile)
    data = layout.db_path.read_bytes()
    layout.db_path.write_bytes(data[: len(data) // 3])
    truncated = layout.db_path.read_bytes()
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        result = ws.sign_in_offline(USER, PASSWORD)
        assert result.notice and "damaged" in result.notice and "set aside" in result.notice
        assert ws.search_patients("a") == []  # a fresh store, to be filled by the next sync
        assert ws.status().pending == 0
    aside = list(layout.quarantine_dir.glob("*-database-damaged/chart.db"))
    assert len(aside) == 1 and aside[0].read_bytes() == truncated


def test_device_secret_is_per_profile(tmp_path: Path) -> None:
    enroll(tmp_path / "a", USER)
    enroll(tmp_path / "b", USER)
    a = ensure_profile(ProfileLayout(tmp_path / "a"))
    b = ensure_profile(ProfileLayout(tmp_path / "b"))
    assert a.profile_id != b.profile_id
    assert device_secret.load(a.profile_id) != device_secret.load(b.profile_id)
    # Profile b's slot does not open with profile a's device secret (copying files is useless).
    slot_b = ProfileLayout(tmp_path / "b").user_slot_path(USER).read_bytes()
    secret_a = device_secret.load(a.profile_id)
    assert secret_a is not None
    with pytest.raises(KeyslotDamaged):
        keyslots.unwrap_for_user(slot_b, PASSWORD, secret_a)
