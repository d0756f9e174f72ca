"""Online sign-in against the real server, then offline; password change; remote wipe;
and the plaintext scan of a realistic session.

Charts arrive through `Workstation.sync()` (the sync engine over the real
`/sync/push` and `/sync/pull`).
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import keyring
import pytest
import sqlcipher3
from desktop_live_server import ClinicServer
from desktop_store_helpers import FAST_KDF

from desktop.services.workstation import Workstation
from desktop.store import device_secret, token_store
from desktop.store.database import key_pragma
from desktop.store.errors import WorkstationWiped, WrongPassword
from desktop.store.profile import ProfileLayout
from desktop.sync.server_api import ServerApi
from shared_models.errors import AuthenticationFailed

BUNDLES = 2


@pytest.fixture(scope="module")
def charts(clinic: ClinicServer, shared_data: Path) -> list[dict[str, Any]]:
    folder = shared_data / "fhir-synthea" / "bundles-2019"
    paths = sorted(p for p in folder.glob("*.json") if "Information" not in p.name)[:BUNDLES]
    return clinic.load_bundles(paths)


def download(ws: Workstation) -> int:
    """One sync; returns how many patients the workstation now holds."""
    ws.sync()
    return len({p.patient_id for p in ws.search_patients("a", 500)})


def test_first_sign_in_is_online_then_offline_works(
    clinic: ClinicServer, charts: list[dict[str, Any]], tmp_path: Path
) -> None:
    user = clinic.add_user("dr.online", ["physician"])
    profile = tmp_path / "profile"
    with Workstation.open(profile, clinic.url, kdf=FAST_KDF) as ws:
        assert not ws.offline_sign_in_status(user.username).possible
        result = ws.sign_in_online(user.username, user.password, user.next_code())
        assert result.online and result.user.roles == ("physician",)
        assert result.policy.offline_signin_days > 0 and not result.policy.wipe
        assert download(ws) > 0
        patient = charts[0]
        found = ws.search_patients(patient["name"][0]["family"][:4])
        assert patient["id"] in [p.patient_id for p in found]
        assert ws.load_chart(patient["id"]).banner.birth_date.isoformat() == patient["birthDate"]
        assert ws.status().online is True
        assert ws.refresh_policy().wipe is False
    # Later, with no server at all: offline sign-in with the password alone.
    with Workstation.open(profile, "http://127.0.0.1:9", kdf=FAST_KDF) as ws:
        assert ws.offline_sign_in_status(user.username).possible
        result = ws.sign_in_offline(user.username, user.password)
        assert not result.online
        assert ws.search_patients(charts[0]["birthDate"])


def test_bad_code_is_refused_and_creates_nothing(clinic: ClinicServer, tmp_path: Path) -> None:
    user = clinic.add_user("nurse.badcode", ["nurse"])
    profile = tmp_path / "profile"
    with Workstation.open(profile, clinic.url, kdf=FAST_KDF) as ws:
        with pytest.raises(AuthenticationFailed) as err:
            ws.sign_in_online(user.username, user.password, "000000")
        assert "code" in err.value.user_message
        assert ws.is_locked
    layout = ProfileLayout(profile)
    assert not layout.user_slot_path(user.username).exists()
    assert not layout.db_path.exists()


def test_password_changed_on_server_replaces_the_keyslot(
    clinic: ClinicServer, charts: list[dict[str, Any]], tmp_path: Path
) -> None:
    user = clinic.add_user("nurse.pwchange", ["nurse"])
    profile = tmp_path / "profile"
    with Workstation.open(profile, clinic.url, kdf=FAST_KDF) as ws:
        ws.sign_in_online(user.username, user.password, user.next_code())
        download(ws)
    new_password = "A-completely-new-passphrase-42"
    clinic.set_password(user.username, new_password)
    with Workstation.open(profile, clinic.url, kdf=FAST_KDF) as ws:
        ws.sign_in_online(user.username, new_password, user.next_code())
        assert ws.search_patients(charts[0]["birthDate"])  # same data, same database key
    with Workstation.open(profile, kdf=FAST_KDF) as ws:
        with pytest.raises(WrongPassword):
            ws.sign_in_offline(user.username, user.password)
        ws.sign_in_offline(user.username, new_password)


def test_remote_wipe_destroys_database_and_keys(
    clinic: ClinicServer, charts: list[dict[str, Any]], tmp_path: Path
) -> None:
    user = clinic.add_user("nurse.leaving", ["nurse"])
    profile = tmp_path / "profile"
    layout = ProfileLayout(profile)
    with Workstation.open(profile, clinic.url, kdf=FAST_KDF) as ws:
        ws.sign_in_online(user.username, user.password, user.next_code())
        download(ws)
        profile_id = ws._session.info.profile_id
        assert device_secret.load(profile_id) is not None
        clinic.disable(user.username)
        with pytest.raises(WorkstationWiped) as err:
            ws.refresh_policy()
        assert "erased" in err.value.user_message
        assert ws.is_locked
    assert layout.db_files() == []
    assert not layout.keys_dir.exists()
    assert device_secret.load(profile_id) is None
    assert (
        keyring.get_password(device_secret.SERVICE, f"tokens:{profile_id}:{user.username}") is None
    )


def test_refresh_rotates_tokens_kept_in_the_keychain(clinic: ClinicServer, tmp_path: Path) -> None:
    user = clinic.add_user("nurse.refresh", ["nurse"])
    with Workstation.open(tmp_path / "profile", clinic.url, kdf=FAST_KDF) as ws:
        ws.sign_in_online(user.username, user.password, user.next_code())
        profile_id = ws._session.info.profile_id
        api = ws._authed_api()
        old = api.tokens
        assert old is not None
        assert token_store.load(profile_id, user.username) == (old.access_token, old.refresh_token)
        new = api.refresh()
        assert new.refresh_token != old.refresh_token
        assert token_store.load(profile_id, user.username) == (new.access_token, new.refresh_token)
        assert ws.refresh_policy().wipe is False  # the new access token works
        replay = ServerApi(clinic.url)
        replay.tokens = old
        with pytest.raises(AuthenticationFailed) as err:
            replay.refresh()  # a spent refresh token is refused
        assert "Sign in online" in err.value.user_message
        replay.close()


def _needles(patients: list[dict[str, Any]]) -> set[bytes]:
    out: set[bytes] = set()
    for p in patients:
        name = p["name"][0]
        values = [name["family"], *name["given"], p["birthDate"]]
        values += [i["value"] for i in p.get("identifier", [])]
        for value in values:
            for variant in {value, value.lower(), value.upper()}:
                out.add(variant.encode("utf-8"))
                out.add(variant.encode("utf-16-le"))
    return out


def _scan(folder: Path, needles: set[bytes]) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.name}: {n[:12]!r}" for n in needles if n in data]
    return hits


def test_no_plaintext_phi_after_a_realistic_session(
    clinic: ClinicServer,
    charts: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    for var in ("TMPDIR", "SQLITE_TMPDIR", "TEMP", "TMP"):
        monkeypatch.setenv(var, str(temp_dir))
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))
    user = clinic.add_user("dr.scan", ["physician"])
    profile = tmp_path / "profile"
    needles = _needles(charts)
    with Workstation.open(profile, clinic.url, kdf=FAST_KDF) as ws:
        ws.sign_in_online(user.username, user.password, user.next_code())
        download(ws)
        for patient in charts:
            ws.search_patients(patient["name"][0]["family"][:3])
            ws.search_patients(patient["birthDate"])
            chart = ws.load_chart(patient["id"])
            vitals = {
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{patient['id']}"},
                "effectiveDateTime": "2026-11-28T10:00:00+00:00",
                "valueQuantity": {"value": 72, "unit": "/min"},
            }
            ws.save_resource(vitals, None)
            note = {
                "resourceType": "DocumentReference",
                "status": "current",
                "docStatus": "preliminary",
                "subject": {"reference": f"Patient/{patient['id']}"},
                "description": f"Progress note for {chart.banner.name}",
                "content": [
                    {"attachment": {"contentType": "text/plain", "data": "U2VlbiB0b2RheS4="}}
                ],
            }
            saved = ws.save_resource(note, None)
            body, version = ws.get_resource("DocumentReference", saved.resource_id)
            ws.save_resource({**body, "docStatus": "final"}, version)  # sign the note
        # While open: the WAL and shared-memory files exist and must be ciphertext too.
        assert any(p.name.endswith("-wal") for p in ProfileLayout(profile).db_files())
        mid_session = _scan(profile, needles) + _scan(temp_dir, needles)
        ws.sync()  # pushes the vitals and the signed notes
        assert ws.status().pending == 0
        ws.lock()
        ws.unlock(user.password)
        ws.rekey()
    assert mid_session == []
    assert _scan(profile, needles) == []
    assert _scan(temp_dir, needles) == []
    logged = caplog.text.encode()
    assert [n for n in needles if n in logged] == []

    db_path = ProfileLayout(profile).db_path
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(db_path).execute("SELECT count(*) FROM sqlite_master").fetchone()
    wrong = sqlcipher3.connect(str(db_path))
    wrong.execute(key_pragma(b"\x01" * 32))
    with pytest.raises(sqlcipher3.DatabaseError):
        wrong.execute("SELECT count(*) FROM sqlite_master").fetchone()
    wrong.close()
