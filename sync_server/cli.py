"""`ehr-server`: serve, migrate, import, seed-demo, demo (plus identity and ops commands).

Every subcommand takes `--data-dir` (or `EHR_DATA_DIR`) and honours `DATABASE_URL`:
with it the server uses that PostgreSQL, without it an embedded one under the data
directory that stops cleanly on exit (SIGINT or SIGTERM). On the embedded database
the schema is brought up to date automatically; an external one must be migrated
with `ehr-server migrate` (a deployment step), and the other commands refuse to
run on an out-of-date schema.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from sync_server import cli_identity, cli_ops
from sync_server.config import Settings
from sync_server.db.engine import (
    alembic_config,
    current_revisions,
    engine_for,
    make_sessionmaker,
    migrate,
)
from sync_server.db.models import INDEX_TABLES
from sync_server.logging_setup import configure_logging
from sync_server.services.context import RequestContext
from sync_server.services.demo_seed import seed_demo
from sync_server.services.fhir_repository import FhirRepository
from sync_server.services.importer import Importer
from sync_server.services.system_access import SystemAudit, SystemGuard


def settings_from(args: argparse.Namespace, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(overrides)
    if getattr(args, "data_dir", None):
        values["data_dir"] = Path(args.data_dir)
    return Settings(**values)


@contextmanager
def ready_engine(settings: Settings) -> Iterator[Engine]:
    """An engine on an up-to-date schema (migrating the embedded database when needed)."""
    with engine_for(settings) as engine:
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        if current_revisions(engine) != heads:
            if settings.database_url:
                raise SystemExit("The database schema is not up to date: run `ehr-server migrate`.")
            migrate(engine)
        yield engine


def system_repository(session: Any, purpose: str) -> FhirRepository:
    return FhirRepository(session, RequestContext.for_system(purpose), SystemGuard(), SystemAudit())


def _has_patients(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text("SELECT EXISTS (SELECT 1 FROM resources WHERE resource_type = 'Patient')")
            ).scalar()
        )


#: What an import or the demo seed fills.
_LOADED_TABLES = ("resources", "resource_versions", "patient_locations", *INDEX_TABLES.values())


def _refresh_statistics(engine: Engine) -> None:
    """ANALYZE after a bulk load, so the planner picks the selective index at once.

    Only the tables the load filled: a database-wide ANALYZE fails ("relation
    with OID ... does not exist") when another session drops a table meanwhile,
    such as an import worker's staging table or a temporary table of the server.
    """
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"ANALYZE {', '.join(_LOADED_TABLES)}")


def _seed(engine: Engine, patients: int, seed: int) -> None:
    with make_sessionmaker(engine)() as session:
        clinic = seed_demo(system_repository(session, "seed-demo"), seed=seed, patients=patients)
        session.commit()
    _refresh_statistics(engine)
    total = sum(clinic.counts.values())
    print(f"Demo clinic seeded: {len(clinic.location_ids)} locations, {patients} patients, "
          f"{total} resources.", flush=True)  # fmt: skip


def _demo_accounts(engine: Engine, settings: Settings) -> None:
    from sync_server.services.demo_accounts import create_demo_accounts
    from sync_server.services.identity import build_runtime

    with make_sessionmaker(engine)() as session:
        path = create_demo_accounts(session, build_runtime(settings), settings.data_dir)
        session.commit()
    if path is not None:
        print(f"Demo sign-in accounts and their TOTP secrets: {path}", flush=True)


def _print_demo_welcome(data_dir: Path, url: str) -> None:
    """What a newcomer needs to sign in: the URL, the demo users and password, the MFA code."""
    from sync_server.services.demo_accounts import NotADemoDataDir, read_demo_accounts

    try:
        demo = read_demo_accounts(data_dir)
    except NotADemoDataDir:
        return  # a data dir whose users were not made by `demo`: nothing demo to show
    dir_flag = f" --data-dir {data_dir}"
    lines = ["", f"Demo clinic at {url}", "Demo accounts (demo only, never use in production):"]
    lines += [f"  {a['username']:<16} {', '.join(a['roles'])}" for a in demo["accounts"]]
    lines += [f"  password for all: {demo['password']}",
              f"Current MFA code: ehr-server demo-otp USERNAME{dir_flag}", ""]  # fmt: skip
    print("\n".join(lines), flush=True)


def _has_display() -> bool:
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _desktop_args(data_dir: Path, url: str) -> list[str]:
    """The `ehr-desktop` arguments that open the desktop on the demo server."""
    from sync_server.services.demo_accounts import ACCOUNTS_FILE

    return ["--server", url, "--profile", str(data_dir / "desktop-profile"),
            "--demo-accounts", str(data_dir / ACCOUNTS_FILE)]  # fmt: skip


class DesktopCompanion:
    """Opens the desktop once the server answers; closing its window stops the server."""

    def __init__(self, server: Any, command: list[str]) -> None:
        self.server = server
        self.command = command
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="desktop-companion", daemon=True).start()

    def _run(self) -> None:
        while not self.server.started:
            if self.server.should_exit:
                return
            time.sleep(0.1)
        print("Opening the desktop app (closing its window stops the server).", flush=True)
        self.process = subprocess.Popen(self.command)  # noqa: S603  (our own interpreter and module)
        self.process.wait()
        self.server.should_exit = True

    def stop(self) -> None:
        """The server is stopping on its own (Ctrl+C): close the desktop too."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with engine_for(settings) as engine:
        migrate(engine)
        print("Schema at " + ", ".join(sorted(current_revisions(engine))))
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    with ready_engine(settings_from(args)) as engine:
        _seed(engine, args.patients, args.seed)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.files]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(f"Not a file: {missing[0]}", file=sys.stderr)
        return 2
    tty = sys.stderr.isatty()

    def progress(done: int) -> None:
        if tty:
            print(f"\r  imported {done:,} resources", end="", file=sys.stderr, flush=True)

    with ready_engine(settings_from(args)) as engine:
        importer = Importer(
            engine,
            RequestContext.for_system("import"),
            SystemGuard(),
            SystemAudit(),
            batch_size=args.batch_size,
            workers=args.workers,
            progress=progress,
        )
        summary = importer.import_files(paths)
        _refresh_statistics(engine)
    if tty:
        print(file=sys.stderr)
    print(f"Imported {summary.resources:,} resources from {summary.files} files "
          f"in {summary.seconds:.1f} s ({summary.rate:,.0f}/s)")  # fmt: skip
    for resource_type, count in sorted(summary.by_type.items()):
        print(f"  {resource_type:<28} {count:>8,}")
    for name, number, message in summary.errors:
        print(f"  refused: {name} #{number}: {message}", file=sys.stderr)
    return 1 if summary.errors else 0


def _serve(args: argparse.Namespace, *, demo: bool) -> int:
    settings = settings_from(args, **({"demo_mode": True} if demo else {}))
    configure_logging(settings)
    with ready_engine(settings) as engine:
        if (demo or args.seed_demo) and not _has_patients(engine):
            _seed(engine, args.patients, args.seed)
        if demo:
            _demo_accounts(engine, settings)
        url = engine.url.render_as_string(hide_password=False)
        engine.dispose()
        # Worker processes build their settings from the environment.
        os.environ["DATABASE_URL"] = url
        os.environ["EHR_DATA_DIR"] = str(settings.data_dir)
        if demo:
            os.environ["EHR_DEMO_MODE"] = "true"
        scheme = "https" if args.tls_cert else "http"
        base_url = f"{scheme}://{args.host}:{args.port}"
        print(f"Serving FHIR R4 at {base_url}/fhir/R4 (Ctrl+C stops)", flush=True)
        if demo:
            _print_demo_welcome(settings.data_dir, base_url)
        import uvicorn

        options: dict[str, Any] = dict(
            app="sync_server.app:app_from_env",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            ssl_certfile=args.tls_cert,
            ssl_keyfile=args.tls_key,
            access_log=False,
            log_config=None,
            # A worker importing the app on a busy machine can take longer than the 5 s default.
            timeout_worker_healthcheck=60,
        )
        if demo:
            desktop_args = _desktop_args(settings.data_dir, base_url)
            if not args.no_desktop and args.workers == 1 and _has_display():
                _serve_with_desktop(uvicorn.Server(uvicorn.Config(**options)), desktop_args)
                return 0
            no_display = "" if args.no_desktop or _has_display() else "No display here. "
            print(f"{no_display}Start the desktop with: ehr-desktop {shlex.join(desktop_args)}",
                  flush=True)  # fmt: skip
        uvicorn.run(**options)
    return 0


def _serve_with_desktop(server: Any, desktop_args: list[str]) -> None:
    # By module name, in a child process: the server never imports the desktop.
    companion = DesktopCompanion(server, [sys.executable, "-m", "desktop.cli", *desktop_args])
    companion.start()
    try:
        server.run()
    finally:
        companion.stop()


def cmd_demo_otp(args: argparse.Namespace) -> int:
    """The current MFA code of a demo user (demo data directories only)."""
    from sync_server.services.demo_accounts import NotADemoDataDir, current_code

    data_dir = settings_from(args).data_dir
    try:
        print(current_code(data_dir, args.username))
    except NotADemoDataDir:
        print(f"{data_dir} is not a demo data directory (no demo accounts file): "
              "demo-otp works only for the accounts `ehr-server demo` created.",
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyError:
        print(f"{args.username} is not a demo account of {data_dir}.", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=os.environ.get("EHR_DATA_DIR"),
        help="where the embedded PostgreSQL and server keys live (env EHR_DATA_DIR)",
    )
    parser = argparse.ArgumentParser(prog="ehr-server", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    for name, demo in (("serve", False), ("demo", True)):
        p = sub.add_parser(name, parents=[common], help=f"{name} the FHIR server")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        p.add_argument("--workers", type=int, default=1)
        p.add_argument("--tls-cert", default=None)
        p.add_argument("--tls-key", default=None)
        p.add_argument("--patients", type=int, default=60, help="demo patients when seeding")
        p.add_argument("--seed", type=int, default=42)
        if not demo:
            p.add_argument("--seed-demo", action="store_true", help="seed demo data if empty")
        else:
            p.add_argument(
                "--no-desktop", action="store_true", help="serve only; do not open the desktop app"
            )
        p.set_defaults(func=lambda a, demo=demo: _serve(a, demo=demo), seed_demo=demo)

    p = sub.add_parser("demo-otp", parents=[common], help="current MFA code of a demo user")
    p.add_argument("username")
    p.set_defaults(func=cmd_demo_otp)

    p = sub.add_parser("migrate", parents=[common], help="upgrade the schema to the latest")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("import", parents=[common], help="load FHIR Bundles and NDJSON files")
    p.add_argument("files", nargs="+")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes validating and writing"
    )
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("seed-demo", parents=[common], help="generate a demo clinic")
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--seed", type=int, default=42)
    p.set_defaults(func=cmd_seed_demo)

    cli_identity.register(sub)
    cli_ops.register(sub)
    return parser


def _stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl+C, so the embedded PostgreSQL is stopped cleanly."""

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _stop_on_sigterm()
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":
    sys.exit(main())
