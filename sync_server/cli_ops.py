"""Operations subcommands of `ehr-server`: encrypted `backup` and `restore`.

    ehr-server backup  --out FILE [--key-file KEY] [--data-dir D]
    ehr-server restore FILE       [--key-file KEY] [--data-dir D]

Both work on the embedded database under the data directory, or on the one
`DATABASE_URL` names, like every other subcommand. The dump is `pg_dump
--format=custom` (schema, rows, sequences and privileges, so the audit table
stays append-only after a restore), streamed through AES-256-GCM
(`sync_server.backup_stream`) with the key IT provides (`--key-file` or
`EHR_BACKUP_KEY_FILE`: 32 random bytes, e.g. `openssl rand -base64 32`).
Plaintext never touches the disk. A backup is written to a temporary name,
fsynced and renamed, so a file with the final name is always complete.

`backup` seals the audit chain first, so the copy holds every event linked and
the head signed. `restore` first authenticates the whole file, then restores it in one
transaction into an empty database: a damaged file or a wrong key changes
nothing. The audit chain's head is signed with the server secret
(`EHR_SERVER_SECRET`), which is not in the backup: restore it from the secret
store for `ehr-server audit verify` to pass on the restored copy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy import text

from sync_server.backup_stream import (
    BackupCorrupt,
    decrypt_stream,
    encrypt_stream,
    load_key,
    read_chunks,
)
from sync_server.config import Settings
from sync_server.db.app_role import APP_ROLE
from sync_server.db.embedded import database_url_for
from sync_server.db.engine import make_engine
from sync_server.services.audit import seal_now
from sync_server.services.identity import build_runtime

KEY_FILE_ENV = "EHR_BACKUP_KEY_FILE"
#: Directory with pg_dump/pg_restore matching an external server's major version.
PG_BIN_ENV = "EHR_PG_BIN_DIR"


class OperationFailed(Exception):
    """Reported to the operator as `error: <message>` with exit status 1."""


def pg_tool(name: str) -> str:
    """Path of a PostgreSQL client tool: `EHR_PG_BIN_DIR`, else pgserver's, else PATH."""
    candidates = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]) / name)
    import pgserver

    candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise OperationFailed(f"{name} not found: set {PG_BIN_ENV}")
    return found


def libpq_target(sqlalchemy_url: str) -> tuple[str, dict[str, str]]:
    """A conninfo without the password (it goes in PGPASSWORD, not on the command line)."""
    uri = sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)
    params = conninfo_to_dict(uri)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo(**{k: str(v) for k, v in params.items() if v is not None}), env


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(data_dir=args.data_dir) if args.data_dir else Settings()


@contextmanager
def _database(settings: Settings) -> Iterator[str]:
    with database_url_for(settings.database_url, settings.data_dir) as url:
        yield url


def seal_audit_chain(database_url: str, settings: Settings) -> int:
    """Chain every finished audit event, so the backup holds a complete, signed chain."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            migrated = conn.execute(text("SELECT to_regclass('audit_chain_head')")).scalar()
        return seal_now(engine, build_runtime(settings).keys) if migrated else 0
    finally:
        engine.dispose()


def _key(args: argparse.Namespace) -> bytes:
    path = args.key_file or os.environ.get(KEY_FILE_ENV)
    if not path:
        raise OperationFailed(f"no backup key: pass --key-file or set {KEY_FILE_ENV}")
    try:
        return load_key(Path(path))
    except (OSError, ValueError) as exc:
        raise OperationFailed(f"cannot use the backup key: {exc}") from exc


def backup(database_url: str, key: bytes, out: Path) -> int:
    """Dump the database encrypted into `out`; return its size in bytes."""
    conninfo, env = libpq_target(database_url)
    partial = out.with_name(f".{out.name}.partial")
    command = [pg_tool("pg_dump"), "--format=custom", "--compress=6", f"--dbname={conninfo}"]
    process = subprocess.Popen(  # noqa: S603 - fixed tool, arguments built here
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        with partial.open("wb") as handle:
            encrypt_stream(key, read_chunks(process.stdout), handle)
            handle.flush()
            os.fsync(handle.fileno())
        errors = process.stderr.read().decode(errors="replace")
        if process.wait() != 0:
            raise OperationFailed(f"pg_dump failed: {errors.strip()}")
        partial.replace(out)
        directory = os.open(out.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    finally:
        process.kill()
        process.wait()
        partial.unlink(missing_ok=True)
    return out.stat().st_size


def _check_empty_and_prepare(conninfo: str, env: dict[str, str]) -> None:
    """Refuse a non-empty target; make sure the application role the grants name exists."""
    password = env.get("PGPASSWORD")
    with psycopg.connect(conninfo, password=password, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone()
        if tables and tables[0]:
            raise OperationFailed(
                "the target database is not empty: restore into a new, empty database"
            )
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone()
        if not exists:
            conn.execute(f"CREATE ROLE {APP_ROLE} NOLOGIN")


def restore(database_url: str, key: bytes, source: Path) -> None:
    """Authenticate the whole backup, then restore it in one transaction."""
    try:
        with source.open("rb") as handle:
            for _ in decrypt_stream(key, handle):
                pass
    except BackupCorrupt as exc:
        raise OperationFailed(f"{source.name}: {exc}; nothing was restored") from exc
    conninfo, env = libpq_target(database_url)
    _check_empty_and_prepare(conninfo, env)
    command = [
        pg_tool("pg_restore"),
        "--no-owner",
        "--exit-on-error",
        "--single-transaction",
        f"--dbname={conninfo}",
    ]
    process = subprocess.Popen(  # noqa: S603 - fixed tool, arguments built here
        command, stdin=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert process.stdin is not None and process.stderr is not None
    try:
        with source.open("rb") as handle:
            for chunk in decrypt_stream(key, handle):
                process.stdin.write(chunk)
        process.stdin.close()
    except (BackupCorrupt, BrokenPipeError):
        process.kill()
    errors = process.stderr.read().decode(errors="replace")
    if process.wait() != 0:
        raise OperationFailed(f"pg_restore failed, nothing was restored: {errors.strip()}")


def _run_backup(args: argparse.Namespace) -> int:
    key = _key(args)
    settings = _settings(args)
    with _database(settings) as url:
        seal_audit_chain(url, settings)
        size = backup(url, key, args.out.resolve())
    print(f"backup written: {args.out} ({size} bytes, encrypted)")
    return 0


def _run_restore(args: argparse.Namespace) -> int:
    key = _key(args)
    with _database(_settings(args)) as url:
        restore(url, key, args.backup_file)
    print(f"restored {args.backup_file.name}; run `ehr-server audit verify` to check the trail")
    return 0


Handler = Callable[[argparse.Namespace], int]


def _reporting(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except OperationFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operations subcommands to the `ehr-server` parser."""
    for name, help_text in (
        ("backup", "write an encrypted backup of the database"),
        ("restore", "restore an encrypted backup into an empty database"),
    ):
        parser = subparsers.add_parser(name, help=help_text)
        parser.add_argument("--data-dir", type=Path, default=None)
        parser.add_argument("--key-file", type=Path, help=f"256-bit key (or ${KEY_FILE_ENV})")
        if name == "backup":
            parser.add_argument("--out", type=Path, required=True)
            parser.set_defaults(func=_reporting(_run_backup))
        else:
            parser.add_argument("backup_file", type=Path)
            parser.set_defaults(func=_reporting(_run_restore))
