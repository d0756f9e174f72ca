"""Reading and writing the key files of a profile (see `keyslots` for the crypto).

`unlock_after_online_sign_in` is the only path that uses the device slot; it
repairs what it can and sets damaged files aside, reporting what it did.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from desktop.store import device_secret, keyslots
from desktop.store.errors import (
    DeviceSecretMissing,
    KeyslotDamaged,
    NoOfflineSignIn,
)
from desktop.store.profile import ProfileInfo, ProfileLayout, quarantine, write_atomic


@dataclass(frozen=True)
class UnlockedKeys:
    profile_key: bytes
    db_key: bytes
    claims: keyslots.SlotClaims
    #: Key of an interrupted rotation: the database may be under this one instead.
    pending_db_key: bytes | None = None
    #: Plain-words note of a repair done on the way (files set aside), or None.
    notice: str | None = None


class KeyFiles:
    def __init__(self, layout: ProfileLayout, info: ProfileInfo, kdf: keyslots.KdfParams) -> None:
        self.layout = layout
        self.info = info
        self.kdf = kdf

    def has_user_slot(self, username: str) -> bool:
        return self.layout.user_slot_path(username).exists()

    def read_user_slot(self, username: str) -> bytes:
        path = self.layout.user_slot_path(username)
        if not path.exists():
            raise NoOfflineSignIn(
                "no keyslot for this user",
                user_message="You have not signed in online on this workstation yet. "
                "Sign in online (with your code) first.",
            )
        return path.read_bytes()

    def _device_secret(self) -> bytes:
        secret = device_secret.load(self.info.profile_id)
        if secret is None:
            raise DeviceSecretMissing("keychain entry missing")
        return secret

    def claims_of(self, username: str, password: str) -> tuple[bytes, keyslots.SlotClaims]:
        """Profile key and claims of a user's slot (offline check of the password)."""
        blob = self.read_user_slot(username)
        return keyslots.unwrap_for_user(blob, password, self._device_secret())

    def peek_claims(self, username: str) -> keyslots.SlotClaims:
        """A user's slot claims without their password (for the sign-in screen)."""
        return keyslots.read_claims(self.read_user_slot(username), self._device_secret())

    def database_key(self, profile_key: bytes) -> bytes:
        blob = self.layout.db_key_path.read_bytes() if self.layout.db_key_path.exists() else b""
        if not blob:
            raise KeyslotDamaged("database key file missing")
        db_key, _generation = keyslots.unwrap_database_key(blob, profile_key, self._device_secret())
        return db_key

    def unlock_offline(self, username: str, password: str) -> UnlockedKeys:
        profile_key, claims = self.claims_of(username, password)
        return UnlockedKeys(
            profile_key,
            self.database_key(profile_key),
            claims,
            self.pending_database_key(profile_key),
        )

    def unlock_after_online_sign_in(
        self, password: str, claims: keyslots.SlotClaims
    ) -> UnlockedKeys:
        """The server has just accepted this user: get (or create) the keys, write their slot."""
        notices: list[str] = []
        secret = device_secret.load(self.info.profile_id)
        if secret is None:
            if self._set_aside_all("keychain-missing"):
                notices.append(DeviceSecretMissing.user_message)
            secret = device_secret.create(self.info.profile_id)
        profile_key = self._profile_key(secret, notices)
        db_key = self._db_key(profile_key, secret, notices)
        slot = keyslots.wrap_for_user(profile_key, password, secret, claims, self.kdf)
        write_atomic(self.layout.user_slot_path(claims.username), slot)
        return UnlockedKeys(
            profile_key,
            db_key,
            claims,
            self.pending_database_key(profile_key),
            " ".join(notices) or None,
        )

    def _profile_key(self, secret: bytes, notices: list[str]) -> bytes:
        path = self.layout.device_slot_path
        if path.exists():
            try:
                return keyslots.unwrap_for_device(path.read_bytes(), secret)
            except KeyslotDamaged:
                self._set_aside_all("device-slot-damaged")
                notices.append(KeyslotDamaged.user_message)
        elif self._set_aside_all("orphan-files"):
            notices.append("Old local files without keys were set aside.")
        profile_key = keyslots.new_key()
        write_atomic(path, keyslots.wrap_for_device(profile_key, secret, self.info.profile_id))
        return profile_key

    def _db_key(self, profile_key: bytes, secret: bytes, notices: list[str]) -> bytes:
        path = self.layout.db_key_path
        if path.exists():
            try:
                return keyslots.unwrap_database_key(path.read_bytes(), profile_key, secret)[0]
            except KeyslotDamaged:
                quarantine(self.layout, [path, *self.layout.db_files()], "database-key-damaged")
                notices.append(
                    "The local chart store's key was damaged; charts will download again."
                )
        elif self.layout.db_files():
            quarantine(self.layout, self.layout.db_files(), "database-without-key")
        db_key = keyslots.new_key()
        self.write_database_key(db_key, profile_key, secret, generation=1)
        return db_key

    def write_database_key(
        self, db_key: bytes, profile_key: bytes, secret: bytes, *, generation: int
    ) -> None:
        blob = keyslots.wrap_database_key(db_key, profile_key, secret, generation)
        write_atomic(self.layout.db_key_path, blob)

    # Rotation is crash-safe: the next key is written to `database.key.next` before
    # `PRAGMA rekey`, and promoted after it; an interrupted rotation leaves both
    # keys, and `pending_database_key` lets the opener try the next one.

    def begin_rotation(self, profile_key: bytes) -> bytes:
        """Write the next database key beside the current one; returns it."""
        secret = self._device_secret()
        blob = self.layout.db_key_path.read_bytes()
        _old, generation = keyslots.unwrap_database_key(blob, profile_key, secret)
        new_key = keyslots.new_key()
        envelope = keyslots.wrap_database_key(new_key, profile_key, secret, generation + 1)
        write_atomic(self._next_key_path, envelope)
        return new_key

    def finish_rotation(self) -> None:
        os.replace(self._next_key_path, self.layout.db_key_path)

    def pending_database_key(self, profile_key: bytes) -> bytes | None:
        """The key of an interrupted rotation, if any."""
        if not self._next_key_path.exists():
            return None
        blob = self._next_key_path.read_bytes()
        return keyslots.unwrap_database_key(blob, profile_key, self._device_secret())[0]

    @property
    def _next_key_path(self) -> Path:
        return self.layout.db_key_path.with_name("database.key.next")

    def _set_aside_all(self, reason: str) -> bool:
        """Quarantine the database and every key file; True if there was anything."""
        files = [*self.layout.db_files()]
        if self.layout.keys_dir.exists():
            files += [p for p in self.layout.keys_dir.rglob("*") if p.is_file()]
        if not files:
            return False
        quarantine(self.layout, files, reason)
        return True
