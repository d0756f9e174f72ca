"""Helpers of the desktop store tests: enrolled profiles, and Synthea charts shaped
as the server's sync pull sends them.

Profiles are enrolled the way an online sign-in does it after the server has
accepted the user (`KeyFiles.unlock_after_online_sign_in`); the online path
through HTTP is tested against the live server in `test_online_signin.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from desktop.store.database import ChartDatabase
from desktop.store.key_files import KeyFiles
from desktop.store.keyslots import KdfParams, SlotClaims
from desktop.store.profile import ProfileLayout, ensure_profile
from desktop.store.remote_changes import RemoteChange, apply_remote_page

#: Cheap argon2id so tests stay fast; production uses `KdfParams()`.
FAST_KDF = KdfParams(time_cost=1, memory_kib=8 * 1024, parallelism=1)
PASSWORD = "correct horse battery staple"


def keychain_env(keychain_path: Path) -> dict[str, str]:
    """Environment that points a child process's `keyring` at the same file."""
    return {
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(keychain_path.parent.parent),
    }


def _with_server_references(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rewrite a transaction Bundle's `urn:uuid:` references to `Type/id`, as the server does."""
    urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (urls.get(v, v) if k == "reference" and isinstance(v, str) else fix(v))
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return [fix(e["resource"]) for e in entries]


@dataclass(frozen=True)
class SyntheaPatient:
    id: str
    family: str
    given: str
    birth_date: str
    mrn: str


def synthea_resources(
    shared_data: Path, count: int
) -> tuple[list[dict[str, Any]], list[SyntheaPatient]]:
    folder = shared_data / "fhir-synthea" / "bundles-2019"
    resources: list[dict[str, Any]] = []
    patients: list[SyntheaPatient] = []
    bundles = sorted(p for p in folder.glob("*.json") if "Information" not in p.name)[:count]
    for path in bundles:
        bundle = json.loads(path.read_text())
        fixed = _with_server_references(bundle["entry"])
        resources += fixed
        for res in fixed:
            if res["resourceType"] == "Patient":
                name = res["name"][0]
                mrn = next(
                    i["value"]
                    for i in res["identifier"]
                    if any(c.get("code") == "MR" for c in i.get("type", {}).get("coding", []))
                )
                patients.append(
                    SyntheaPatient(
                        res["id"], name["family"], name["given"][0], res["birthDate"], mrn
                    )
                )
    return resources, patients


def as_changes(resources: list[dict[str, Any]], version: int = 1) -> list[RemoteChange]:
    return [
        RemoteChange(r["resourceType"], r["id"], version, resource_json=orjson.dumps(r))
        for r in resources
    ]


def enroll(
    profile_dir: Path,
    username: str = "nurse.joy",
    password: str = PASSWORD,
    *,
    last_online: datetime | None = None,
    offline_days: int = 7,
    idle_minutes: int = 15,
    resources: list[dict[str, Any]] | None = None,
) -> None:
    """Do what an accepted online sign-in does to a profile, then cache `resources`."""
    layout = ProfileLayout(profile_dir)
    info = ensure_profile(layout)
    claims = SlotClaims(
        username=username,
        profile_id=info.profile_id,
        last_online_signin=(last_online or datetime.now(UTC)).isoformat(),
        offline_signin_days=offline_days,
        idle_lock_minutes=idle_minutes,
        roles=("nurse",),
        locations=("loc-main",),
        practitioner=None,
    )
    keys = KeyFiles(layout, info, FAST_KDF).unlock_after_online_sign_in(password, claims)
    if resources:
        db = ChartDatabase(layout.db_path, keys.db_key)
        try:
            apply_remote_page(db, as_changes(resources), "cursor-1")
        finally:
            db.close()


def days_ago(days: float) -> datetime:
    return datetime.now(UTC) - timedelta(days=days)
