"""The profile directory on disk: where each file lives, the lock, and quarantine.

Layout (nothing here is plaintext PHI):

    profile.json          profile id and workstation id (no PHI)
    profile.lock          held (flock) by the one process that has the profile open
    chart.db (-wal, -shm) the SQLCipher database
    keys/device.slot      profile key wrapped under the device secret (keychain)
    keys/database.key     database key wrapped under the profile key
    keys/users/*.slot     profile key wrapped per user (password + device secret)
    quarantine/           damaged files set aside, still encrypted, never deleted silently
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from desktop.store.errors import ProfileInUse

DB_SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class ProfileLayout:
    root: Path

    @property
    def meta_path(self) -> Path:
        return self.root / "profile.json"

    @property
    def lock_path(self) -> Path:
        return self.root / "profile.lock"

    @property
    def db_path(self) -> Path:
        return self.root / "chart.db"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def device_slot_path(self) -> Path:
        return self.keys_dir / "device.slot"

    @property
    def db_key_path(self) -> Path:
        return self.keys_dir / "database.key"

    @property
    def users_dir(self) -> Path:
        return self.keys_dir / "users"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    def user_slot_path(self, username: str) -> Path:
        """Keyslot file of a user; the name is a hash so odd usernames are safe."""
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        return self.users_dir / f"{digest}.slot"

    def db_files(self) -> list[Path]:
        """The database and its WAL/shared-memory/journal side files that exist."""
        candidates = [self.db_path] + [
            self.db_path.with_name(self.db_path.name + s) for s in DB_SIDE_SUFFIXES
        ]
        return [p for p in candidates if p.exists()]


@dataclass(frozen=True)
class ProfileInfo:
    profile_id: str
    workstation_id: str


def ensure_profile(layout: ProfileLayout) -> ProfileInfo:
    """Create the directory tree and ids on first use; read them afterwards."""
    layout.users_dir.mkdir(parents=True, exist_ok=True)
    for directory in (layout.root, layout.keys_dir, layout.users_dir):
        directory.chmod(0o700)
    if layout.meta_path.exists():
        meta = json.loads(layout.meta_path.read_text())
        return ProfileInfo(meta["profile_id"], meta["workstation_id"])
    info = ProfileInfo(str(uuid.uuid4()), str(uuid.uuid4()))
    write_atomic(
        layout.meta_path,
        json.dumps({"profile_id": info.profile_id, "workstation_id": info.workstation_id}).encode(),
    )
    return info


def write_atomic(path: Path, data: bytes) -> None:
    """Write a small file durably: temp file beside it, fsync, rename, fsync the dir."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def quarantine(layout: ProfileLayout, paths: list[Path], reason: str) -> Path:
    """Move damaged files (still encrypted) into quarantine/<time>-<reason>/; returns it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = layout.quarantine_dir / f"{stamp}-{reason}"
    target.mkdir(parents=True, mode=0o700)
    for path in paths:
        if path.exists():
            shutil.move(str(path), target / path.name)
    _fsync_dir(target)
    return target


class ProfileLock:
    """An exclusive OS lock on `profile.lock`, held while the profile is open.

    The OS drops it when the process dies, so a crash never leaves the profile stuck.
    """

    def __init__(self, layout: ProfileLayout) -> None:
        self._path = layout.lock_path
        self._file: IO[bytes] | None = None

    def acquire(self) -> None:
        handle = open(self._path, "a+b")  # noqa: SIM115 - held open until release()
        try:
            _lock_file(handle)
        except OSError:
            handle.close()
            raise ProfileInUse(f"profile lock busy: {self._path.name}") from None
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            _unlock_file(self._file)
            self._file.close()
            self._file = None


if sys.platform == "win32":  # pragma: no cover - exercised on Windows builds only
    import msvcrt

    def _lock_file(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)

    def _unlock_file(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock_file(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
