"""Publish workstation builds as a TUF repository the server serves under `/updates`.

    python packaging/tuf_publish.py init    --repo DIR --keys KEYDIR
    python packaging/tuf_publish.py publish --repo DIR --keys KEYDIR --version 0.2.0 BUILD
    python packaging/tuf_publish.py refresh-timestamp --repo DIR --keys KEYDIR   # cron, daily

`DIR` has `metadata/` and `targets/`; point the server's `EHR_UPDATES_DIR` at it.
Each TUF role (root, targets, snapshot, timestamp) has its own Ed25519 key in
`KEYDIR/<role>.pem`. IT keeps the root key offline (it is needed only for
`init` and key rotation) and the targets key with the release signing key; the
snapshot and timestamp keys live where the cron job runs. Consistent snapshots
are on, so a client that reads the repository while a build is being
published never sees a mix of old and new files.

Expiry (days): root 365, targets 90, snapshot 7, timestamp 1. A server that
stops refreshing the timestamp makes every workstation refuse updates within a
day instead of being frozen on an old view.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key

# tuf's documented API re-exports these names without `__all__`; mypy sees them as private.
from securesystemslib.signer import CryptoSigner  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

ROLES = ("root", "targets", "snapshot", "timestamp")
EXPIRY_DAYS = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 1}
PRODUCT = "ehr-desktop"


def _expiry(role: str, now: datetime | None = None) -> datetime:
    start = now or datetime.now(UTC)
    return (start + timedelta(days=EXPIRY_DAYS[role])).replace(microsecond=0)


def _signer(keys: Path, role: str) -> CryptoSigner:
    key = load_pem_private_key((keys / f"{role}.pem").read_bytes(), password=None)
    return CryptoSigner(key)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _save(repo: Path, metadata: Metadata[Any], signer: CryptoSigner, *, versioned: bool) -> None:
    metadata.signatures.clear()
    metadata.sign(signer)
    data = metadata.to_bytes(JSONSerializer(compact=False))
    role = metadata.signed.type
    if versioned:
        _write_atomic(repo / "metadata" / f"{metadata.signed.version}.{role}.json", data)
    if role in ("root", "timestamp"):
        _write_atomic(repo / "metadata" / f"{role}.json", data)


def _load(repo: Path, role: str) -> Metadata[Any]:
    if role == "timestamp":
        return Metadata.from_file(str(repo / "metadata" / "timestamp.json"))
    if role == "snapshot":
        version = _load(repo, "timestamp").signed.snapshot_meta.version
    else:
        version = _load(repo, "snapshot").signed.meta[f"{role}.json"].version
    return Metadata.from_file(str(repo / "metadata" / f"{version}.{role}.json"))


def init_repository(repo: Path, keys: Path) -> bytes:
    """Make keys and the first metadata; return the root metadata the build must bundle."""
    keys.mkdir(parents=True, exist_ok=True)
    signers = {role: CryptoSigner.generate_ed25519() for role in ROLES}
    for role, signer in signers.items():
        fd = os.open(keys / f"{role}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(signer.private_bytes)
    root = Root(expires=_expiry("root"), consistent_snapshot=True)
    for role, signer in signers.items():
        root.add_key(signer.public_key, role)
    _save(repo, Metadata(root), signers["root"], versioned=True)
    _save(repo, Metadata(Targets(expires=_expiry("targets"))), signers["targets"], versioned=True)
    _save(
        repo, Metadata(Snapshot(expires=_expiry("snapshot"))), signers["snapshot"], versioned=True
    )
    timestamp = Timestamp(expires=_expiry("timestamp"))
    _save(repo, Metadata(timestamp), signers["timestamp"], versioned=False)
    return (repo / "metadata" / "root.json").read_bytes()


def _add_target(repo: Path, targets: Targets, target_path: str, local: Path) -> None:
    info = TargetFile.from_file(target_path, str(local), ["sha256"])
    directory, _, name = target_path.rpartition("/")
    stored = repo / "targets" / directory / f"{info.hashes['sha256']}.{name}"
    stored.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, stored)
    targets.targets[target_path] = info


def _release_chain(repo: Path, keys: Path, targets_md: Metadata[Any], now: datetime) -> None:
    """Sign new targets, snapshot and timestamp versions (in the order clients read back)."""
    targets_md.signed.version += 1
    targets_md.signed.expires = _expiry("targets", now)
    _save(repo, targets_md, _signer(keys, "targets"), versioned=True)
    snapshot_md = _load(repo, "snapshot")
    snapshot_md.signed.meta["targets.json"] = MetaFile(version=targets_md.signed.version)
    snapshot_md.signed.version += 1
    snapshot_md.signed.expires = _expiry("snapshot", now)
    _save(repo, snapshot_md, _signer(keys, "snapshot"), versioned=True)
    _sign_timestamp(repo, keys, snapshot_md.signed.version, _expiry("timestamp", now))


def publish_build(
    repo: Path,
    keys: Path,
    build: Path,
    version: str,
    channel: str = "stable",
    now: datetime | None = None,
) -> str:
    """Add `build` as `version` and point `channel` at it; return its target path."""
    now = now or datetime.now(UTC)
    targets_md = _load(repo, "targets")
    target_path = f"{PRODUCT}/{version}/{build.name}"
    _add_target(repo, targets_md.signed, target_path, build)
    channel_file = repo / "staging" / f"{channel}.json"
    _write_atomic(channel_file, json.dumps({"version": version, "target": target_path}).encode())
    _add_target(repo, targets_md.signed, f"{PRODUCT}/channels/{channel}.json", channel_file)
    _release_chain(repo, keys, targets_md, now)
    return target_path


def _sign_timestamp(repo: Path, keys: Path, snapshot_version: int, expires: datetime) -> None:
    timestamp_md = _load(repo, "timestamp")
    timestamp_md.signed.snapshot_meta = MetaFile(version=snapshot_version)
    timestamp_md.signed.version += 1
    timestamp_md.signed.expires = expires
    _save(repo, timestamp_md, _signer(keys, "timestamp"), versioned=False)


def refresh_timestamp(repo: Path, keys: Path, expires: datetime | None = None) -> None:
    """Re-sign the timestamp over the current snapshot with a fresh expiry (daily cron)."""
    snapshot_version = _load(repo, "snapshot").signed.version
    _sign_timestamp(repo, keys, snapshot_version, expires or _expiry("timestamp"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tuf_publish.py", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["init", "publish", "refresh-timestamp"])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--version")
    parser.add_argument("--channel", default="stable")
    parser.add_argument("build", type=Path, nargs="?")
    args = parser.parse_args(argv)
    if args.command == "init":
        init_repository(args.repo, args.keys)
        print(f"root metadata to bundle in the build: {args.repo / 'metadata' / 'root.json'}")
    elif args.command == "publish":
        if not args.version or args.build is None:
            parser.error("publish needs --version and the build file")
        print(publish_build(args.repo, args.keys, args.build, args.version, args.channel))
    else:
        refresh_timestamp(args.repo, args.keys)
    return 0


if __name__ == "__main__":
    sys.exit(main())
