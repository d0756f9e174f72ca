"""`ehr-desktop`: the GUI by default, headless subcommands for IT and scripts.

    ehr-desktop [--server URL] [--profile DIR]            open the GUI
                [--demo-accounts FILE]                    (demo clinic: `ehr-server demo`)
    ehr-desktop status --profile DIR [sign-in flags]      profile and sync state
    ehr-desktop rekey  --profile DIR  sign-in flags       rotate the database key
    ehr-desktop sync   --profile DIR  sign-in flags       (added by the sync engine)
    ehr-desktop check-update [--server URL]               fetch and verify a newer build

Sign-in flags: `--user U --password-stdin [--otp CODE]`; with `--otp` the
sign-in is online, without it offline where the policy allows. The password
is read from stdin only, never from the command line. Errors print the
clinician-readable message and exit with status 3.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from shared_models.errors import ClinicError

if TYPE_CHECKING:  # imported where used: the GUI shows its window before this heavy import
    from desktop.services.workstation import Workstation

EXIT_ERROR = 3


def default_profile_dir() -> Path:
    return Path(platformdirs.user_data_dir("ehr-desktop", appauthor=False)) / "profile"


def _add_profile_args(parser: argparse.ArgumentParser, *, sign_in_required: bool) -> None:
    parser.add_argument("--profile", type=Path, default=default_profile_dir())
    parser.add_argument("--server", help="server base URL (default: the workstation config)")
    parser.add_argument("--user", required=sign_in_required, help="username")
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    parser.add_argument("--otp", help="the current code of your authenticator (online sign-in)")


def open_signed_in(args: argparse.Namespace) -> Workstation:
    """Open the profile and sign in as the flags say (online with --otp, else offline).

    Shared by every headless subcommand, including the sync engine's `sync`.
    """
    if not args.password_stdin:
        raise ClinicError("--password-stdin missing", user_message="Use --password-stdin.")
    password = sys.stdin.readline().rstrip("\r\n")
    from desktop.services.workstation import Workstation

    ws = Workstation.open(args.profile, _server_url(args.server))
    try:
        if args.otp:
            result = ws.sign_in_online(args.user, password, args.otp)
        else:
            result = ws.sign_in_offline(args.user, password)
        if result.notice:
            print(result.notice, file=sys.stderr)
    except BaseException:
        ws.close()
        raise
    return ws


def _server_url(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    from desktop.config import load_config

    return load_config().server_url


def cmd_status(args: argparse.Namespace) -> int:
    from desktop.services.workstation import Workstation

    if args.user:
        ws = open_signed_in(args)
    else:
        ws = Workstation.open(args.profile, _server_url(args.server))
    with ws:
        status = ws.status()
        lines = {
            "profile": str(ws.profile_dir),
            "workstation_id": status.workstation_id,
            "server": status.server_url or "(none)",
            "user": status.user or "(not signed in)",
            "locked": str(status.locked).lower(),
        }
        if not status.locked:
            lines |= {
                "online": {True: "online", False: "offline", None: "unknown"}[status.online],
                "pending_changes": str(status.pending),
                "open_conflicts": str(status.conflicts),
                "last_sync": status.last_sync.isoformat() if status.last_sync else "never",
            }
        elif args.user is None:
            lines["hint"] = "add --user U --password-stdin to see pending changes"
        for key, value in lines.items():
            print(f"{key}: {value}")
    return 0


def cmd_rekey(args: argparse.Namespace) -> int:
    with open_signed_in(args) as ws:
        ws.rekey()
        print("database key rotated; every keyslot still opens it")
    return 0


def cmd_check_update(args: argparse.Namespace) -> int:
    """Refresh the signed update metadata; download and verify a newer build if offered."""
    from desktop import __version__
    from desktop.config import load_config
    from desktop.updates import UpdateRefused, installed_checker

    config = load_config(cli_overrides={"server_url": args.server})
    try:
        result = installed_checker(config, args.channel).check_and_download()
    except UpdateRefused as exc:
        print(f"{exc.user_message}\nreason: {exc.detail}", file=sys.stderr)
        return EXIT_ERROR
    if result is None:
        print(f"up to date: {__version__}")
        return 0
    update, path = result
    print(f"update {update.version} downloaded and verified ({update.length} bytes): {path}")
    return 0


def _register_sync(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`ehr-desktop sync`: provided by the sync engine as `desktop.sync.cli.register`.

    It receives the subparsers plus `_add_profile_args` and `open_signed_in`,
    so its flags and sign-in behave like the other subcommands.
    """
    try:
        sync_cli = importlib.import_module("desktop.sync.cli")
    except ModuleNotFoundError:
        return
    sync_cli.register(subparsers, add_profile_args=_add_profile_args, open_signed_in=open_signed_in)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ehr-desktop", description=__doc__.split("\n")[0])
    parser.add_argument("--server", help="server base URL")
    parser.add_argument("--profile", type=Path, help="profile directory")
    parser.add_argument(
        "--demo-accounts",
        type=Path,
        help="demo clinic only: show these demo accounts and their codes on the sign-in screen",
    )
    parser.add_argument(
        "--self-test", action="store_true", help="check this installation and exit (IT, CI)"
    )
    sub = parser.add_subparsers(dest="command")
    status = sub.add_parser("status", help="profile, sign-in and sync state")
    _add_profile_args(status, sign_in_required=False)
    status.set_defaults(handler=cmd_status)
    rekey = sub.add_parser("rekey", help="rotate the database key (PRAGMA rekey)")
    _add_profile_args(rekey, sign_in_required=True)
    rekey.set_defaults(handler=cmd_rekey)
    check = sub.add_parser("check-update", help="fetch and verify a newer signed build (TUF)")
    check.add_argument("--server", help="server base URL (default: the workstation config)")
    check.add_argument("--channel", default="stable", help="release channel (default: stable)")
    check.set_defaults(handler=cmd_check_update)
    _register_sync(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.self_test:  # imported by name: the self-test loads Qt, this module must not
        self_test = importlib.import_module("desktop.self_test")
        return int(self_test.main(args.server))
    if args.command is None:
        app = importlib.import_module("desktop.app")  # Qt is loaded only for the GUI
        result: int = app.main(argv)
        return result
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ClinicError as exc:
        print(exc.user_message, file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
