"""Key wrapping: who can recover the database key, and under which conditions.

Two levels, so the database key can be rotated without every user's password:

- the **profile key** (random 256 bits) is wrapped once per user in a *user
  slot* (AES-256-GCM under HKDF(argon2id(password, salt), device secret)) and
  once in the *device slot* (under the device secret alone);
- the **database key** (random 256 bits, SQLCipher raw key) is wrapped under
  the profile key in `database.key`.

A user slot carries claims (user, roles, last online sign-in, offline window)
as AES-GCM associated data: editing them breaks decryption. The file also
carries an HMAC under the device secret, so a file changed on disk is told
apart from a wrong password. The device slot is used only after the server
has checked the user's password and code (an online sign-in), to create or
replace that user's slot.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from desktop.store.errors import KeyslotDamaged, WrongPassword

KEY_BYTES = 32
FORMAT = "ehr-keyslot/1"


@dataclass(frozen=True)
class KdfParams:
    """argon2id cost. The default takes ~0.2-0.5 s and 64 MiB on a clinic PC."""

    time_cost: int = 3
    memory_kib: int = 64 * 1024
    parallelism: int = 2


@dataclass(frozen=True)
class SlotClaims:
    """Authenticated (not secret) facts stored with a user's slot."""

    username: str
    profile_id: str
    last_online_signin: str  # ISO 8601, UTC
    offline_signin_days: int
    idle_lock_minutes: int
    roles: tuple[str, ...]
    locations: tuple[str, ...]
    practitioner: str | None

    @property
    def offline_until(self) -> datetime:
        return datetime.fromisoformat(self.last_online_signin) + timedelta(
            days=self.offline_signin_days
        )


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text, validate=True)


def _hkdf(secret: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=salt, info=info).derive(secret)


def _mac(device_secret: bytes, body: bytes) -> str:
    mac_key = _hkdf(device_secret, b"", b"ehr-desktop keyslot mac")
    return _b64(hmac.new(mac_key, body, hashlib.sha256).digest())


def _password_key(password: str, salt: bytes, device_secret: bytes, kdf: KdfParams) -> bytes:
    stretched = hash_secret_raw(
        password.encode(),
        salt,
        time_cost=kdf.time_cost,
        memory_cost=kdf.memory_kib,
        parallelism=kdf.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )
    return _hkdf(stretched, device_secret, b"ehr-desktop user slot")


def _seal(key: bytes, secret: bytes, header: dict[str, Any], device_secret: bytes) -> bytes:
    aad = orjson.dumps(header, option=orjson.OPT_SORT_KEYS)
    nonce = os.urandom(12)
    body = {
        "header": header,
        "nonce": _b64(nonce),
        "ct": _b64(AESGCM(key).encrypt(nonce, secret, aad)),
    }
    encoded = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return orjson.dumps({"slot": body, "mac": _mac(device_secret, encoded)})


def _open_file(blob: bytes, device_secret: bytes) -> tuple[dict[str, Any], bytes, bytes]:
    """Parse and authenticate a slot file: (header, nonce, ciphertext)."""
    try:
        outer = orjson.loads(blob)
        body = outer["slot"]
        encoded = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        if not hmac.compare_digest(_mac(device_secret, encoded), str(outer["mac"])):
            raise ValueError("mac mismatch")
        header = body["header"]
        if header.get("format") != FORMAT:
            raise ValueError("unknown format")
        return header, _unb64(body["nonce"]), _unb64(body["ct"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KeyslotDamaged(f"keyslot file rejected: {exc.__class__.__name__}") from None


def wrap_for_user(
    profile_key: bytes, password: str, device_secret: bytes, claims: SlotClaims, kdf: KdfParams
) -> bytes:
    salt = os.urandom(16)
    header = {
        "format": FORMAT,
        "kind": "user",
        "kdf": {"alg": "argon2id", "salt": _b64(salt), **asdict(kdf)},
        "claims": asdict(claims),
    }
    key = _password_key(password, salt, device_secret, kdf)
    return _seal(key, profile_key, header, device_secret)


def _claims(header: dict[str, Any]) -> SlotClaims:
    raw = dict(header["claims"])
    return SlotClaims(**{**raw, "roles": tuple(raw["roles"]), "locations": tuple(raw["locations"])})


def read_claims(blob: bytes, device_secret: bytes) -> SlotClaims:
    """The claims of a user slot without the password (the file's MAC is checked).

    Enough to tell the sign-in screen whether an offline sign-in is possible;
    a forged claim could not be used anyway, since it is also the cipher's AAD.
    """
    header, _nonce, _ct = _open_file(blob, device_secret)
    try:
        return _claims(header)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyslotDamaged(f"keyslot header rejected: {exc.__class__.__name__}") from None


def unwrap_for_user(blob: bytes, password: str, device_secret: bytes) -> tuple[bytes, SlotClaims]:
    """The profile key and the slot's claims; `WrongPassword` or `KeyslotDamaged`."""
    header, nonce, ct = _open_file(blob, device_secret)
    try:
        kdf_doc = header["kdf"]
        kdf = KdfParams(kdf_doc["time_cost"], kdf_doc["memory_kib"], kdf_doc["parallelism"])
        claims = _claims(header)
        key = _password_key(password, _unb64(kdf_doc["salt"]), device_secret, kdf)
    except (KeyError, TypeError, ValueError) as exc:
        raise KeyslotDamaged(f"keyslot header rejected: {exc.__class__.__name__}") from None
    aad = orjson.dumps(header, option=orjson.OPT_SORT_KEYS)
    try:
        profile_key = AESGCM(key).decrypt(nonce, ct, aad)
    except InvalidTag:
        # The MAC proved the file is as written here: the password is what differs.
        raise WrongPassword("keyslot did not open with this password") from None
    return profile_key, claims


def wrap_for_device(profile_key: bytes, device_secret: bytes, profile_id: str) -> bytes:
    header = {"format": FORMAT, "kind": "device", "profile_id": profile_id}
    key = _hkdf(device_secret, b"", b"ehr-desktop device slot")
    return _seal(key, profile_key, header, device_secret)


def unwrap_for_device(blob: bytes, device_secret: bytes) -> bytes:
    header, nonce, ct = _open_file(blob, device_secret)
    key = _hkdf(device_secret, b"", b"ehr-desktop device slot")
    try:
        return AESGCM(key).decrypt(nonce, ct, orjson.dumps(header, option=orjson.OPT_SORT_KEYS))
    except InvalidTag:
        raise KeyslotDamaged("device slot does not decrypt") from None


def wrap_database_key(
    db_key: bytes, profile_key: bytes, device_secret: bytes, generation: int
) -> bytes:
    header = {"format": FORMAT, "kind": "database", "generation": generation}
    return _seal(profile_key, db_key, header, device_secret)


def unwrap_database_key(blob: bytes, profile_key: bytes, device_secret: bytes) -> tuple[bytes, int]:
    """The database key and its generation (incremented by each rekey)."""
    header, nonce, ct = _open_file(blob, device_secret)
    try:
        db_key = AESGCM(profile_key).decrypt(
            nonce, ct, orjson.dumps(header, option=orjson.OPT_SORT_KEYS)
        )
    except InvalidTag:
        raise KeyslotDamaged("database key envelope does not decrypt") from None
    return db_key, int(header.get("generation", 0))
