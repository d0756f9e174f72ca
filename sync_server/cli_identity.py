"""Identity and audit subcommands of `ehr-server`.

    ehr-server create-user --username U --role R [--role R2] --location ID... --password-stdin
                           [--totp-secret-out FILE] [--practitioner ID] [--data-dir D]
    ehr-server audit verify [--data-dir D]

The password comes from stdin or an interactive prompt, never from argv. The TOTP
secret (base32) goes to the file (mode 0600), never to the terminal. Like every
subcommand, both use `DATABASE_URL` or the embedded PostgreSQL under the data dir.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from sqlalchemy.orm import Session

from shared_models.errors import ClinicError, ValidationFailed
from sync_server.services import users
from sync_server.services.audit import seal_now
from sync_server.services.audit_chain import verify_chain
from sync_server.services.context import RequestContext
from sync_server.services.identity import build_runtime
from sync_server.services.login_policy import mfa_required


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise ValidationFailed("passwords differ", user_message="The passwords do not match.")
    return first


def _write_secret(path: Path, secret: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret + "\n")


def cmd_create_user(args: argparse.Namespace) -> int:
    from sync_server.cli import ready_engine, settings_from

    settings = settings_from(args)
    runtime = build_runtime(settings)
    if mfa_required(frozenset(args.role), runtime.security) and not args.totp_secret_out:
        print(
            "error: MFA is required for these roles: give --totp-secret-out FILE", file=sys.stderr
        )
        return 2
    password = _read_password(args.password_stdin)
    with ready_engine(settings) as engine, Session(engine) as session:
        try:
            user, enrolment = users.create_user(
                session, runtime.keys, runtime.security,
                username=args.username, password=password, roles=args.role,
                location_ids=args.location or [], practitioner_id=args.practitioner,
            )  # fmt: skip
        except ClinicError as exc:
            print(f"error: {exc.user_message}", file=sys.stderr)
            return 1
        runtime.audit.record(
            session, RequestContext.for_system("create-user"), action="user-create",
            outcome="success", detail={"user": user.username},
        )  # fmt: skip
        session.commit()
    if args.totp_secret_out:
        _write_secret(Path(args.totp_secret_out), enrolment.secret)
    print(f"User {args.username} created with roles {', '.join(sorted(set(args.role)))}.")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from sync_server.cli import ready_engine, settings_from

    settings = settings_from(args)
    runtime = build_runtime(settings)
    with ready_engine(settings) as engine:
        seal_now(engine, runtime.keys)
        with engine.connect() as conn:
            report = verify_chain(conn, runtime.audit_mac_key)
    if report.ok:
        print(f"Audit chain intact: {report.rows_checked} events verified.")
        return 0
    print(
        f"Audit chain BROKEN at event {report.first_broken_seq}: {report.problem} "
        f"({report.rows_checked} events verified before it)."
    )
    return 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the identity subcommands to the `ehr-server` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=os.environ.get("EHR_DATA_DIR"),
        help="where the embedded PostgreSQL and server keys live (env EHR_DATA_DIR)",
    )
    p = subparsers.add_parser("create-user", parents=[common], help="create a user account")
    p.add_argument("--username", required=True)
    p.add_argument("--role", action="append", required=True, help="physician, nurse, ...")
    p.add_argument("--location", nargs="+", action="extend", help="FHIR Location ids")
    p.add_argument("--practitioner", help="id of the user's FHIR Practitioner")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--totp-secret-out", help="file to write the TOTP secret (base32) to")
    p.set_defaults(func=cmd_create_user)

    audit = subparsers.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    p = audit_sub.add_parser("verify", parents=[common], help="check the audit hash chain")
    p.set_defaults(func=cmd_audit_verify)
