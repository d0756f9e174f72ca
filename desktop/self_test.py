"""`ehr-desktop --self-test [--server URL]`: proof that an installed build works.

IT and CI run it on the frozen build. Each check prints `PASS name: detail` or
`FAIL name: reason`; the exit status is 0 only when all pass:

- `qt`: Qt starts on the offscreen platform and shows and closes a window;
- `encrypted-db`: a chart database created in a temporary profile opens,
  closes and reopens with its key, and its file on disk is not readable as
  plain SQLite (no SQLite header, refused without the key);
- `resources`: every bundled resource loads (style sheets, note templates,
  translations, icons, JSON terminology subsets);
- `server` (with `--server`): `/healthz` answers 200 over TLS, trusting only
  the configured CA bundle when one is set.

Qt is imported inside the checks only, so importing this module stays headless.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from desktop.config import load_config

SQLITE_HEADER = b"SQLite format 3\x00"


class CheckFailed(Exception):
    pass


def check_qt() -> str:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QCoreApplication, qVersion
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication.instance() or QApplication([])
    label = QLabel("ehr-desktop self-test")
    label.show()
    QCoreApplication.processEvents()
    if not label.isVisible():
        raise CheckFailed("a window could not be shown")
    label.close()
    return f"Qt {qVersion()} on {QApplication.platformName() or 'offscreen'} ({type(app).__name__})"


def check_encrypted_database() -> str:
    from desktop.store.database import ChartDatabase

    key = os.urandom(32)
    with tempfile.TemporaryDirectory(prefix="ehr-self-test-") as profile:
        path = Path(profile) / "chart.db"
        database = ChartDatabase(path, key)
        with database.transaction() as conn:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        database.close()
        if path.read_bytes()[:16] == SQLITE_HEADER:
            raise CheckFailed("the database file has a plain SQLite header: NOT encrypted")
        plain = sqlite3.connect(path)
        try:
            plain.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError:
            pass
        else:
            raise CheckFailed("the database file opens without its key: NOT encrypted")
        finally:
            plain.close()
        reopened = ChartDatabase(path, key)
        reopened.close()
    return f"SQLCipher file encrypted, {tables} schema objects, reopened with its key"


def _load_resource(path: Path) -> None:
    from PySide6.QtCore import QTranslator
    from PySide6.QtGui import QIcon, QImage

    suffix = path.suffix.lower()
    if suffix in {".png", ".svg", ".ico", ".jpg"}:
        if QImage(str(path)).isNull() and QIcon(str(path)).isNull():
            raise CheckFailed(f"{path.name}: image does not load")
    elif suffix == ".qm":
        if not QTranslator().load(str(path)):
            raise CheckFailed(f"{path.name}: translation does not load")
    elif suffix == ".json":
        json.loads(path.read_bytes())
    else:
        path.read_text(encoding="utf-8")


def check_resources() -> str:
    from desktop.config import resources_dir

    directory = resources_dir()
    files = sorted(p for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else []
    if not files:
        raise CheckFailed(f"no bundled resources found in {directory}")
    for path in files:
        try:
            _load_resource(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise CheckFailed(f"{path.relative_to(directory)}: {exc}") from exc
    return f"{len(files)} resources loaded from {directory.name}/"


def check_server(server_url: str) -> str:
    if urlsplit(server_url).scheme != "https":
        raise CheckFailed("the server URL must be https:// for this check")
    config = load_config(cli_overrides={"server_url": server_url})
    url = f"{server_url.rstrip('/')}/healthz"
    try:
        with httpx.Client(verify=config.ssl_context(), proxy=config.proxy, timeout=10) as client:
            response = client.get(url)
    except httpx.HTTPError as exc:
        raise CheckFailed(f"{url} unreachable over TLS: {exc}") from exc
    if response.status_code != 200:
        raise CheckFailed(f"{url} answered {response.status_code}")
    pinned = "pinned CA" if config.ca_bundle else "system CAs"
    return f"{url} healthy over TLS ({pinned})"


def run_checks(server_url: str | None) -> list[tuple[str, bool, str]]:
    checks: list[tuple[str, Callable[[], str]]] = [
        ("qt", check_qt),
        ("encrypted-db", check_encrypted_database),
        ("resources", check_resources),
    ]
    if server_url:
        checks.append(("server", lambda: check_server(server_url)))
    results = []
    for name, check in checks:
        try:
            results.append((name, True, check()))
        except Exception as exc:  # every failure is reported, none stops the others
            results.append((name, False, f"{type(exc).__name__}: {exc}"))
    return results


def main(server_url: str | None = None) -> int:
    results = run_checks(server_url)
    for name, ok, detail in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}")
    passed = all(ok for _, ok, _ in results)
    print("self-test passed" if passed else "self-test FAILED", file=sys.stderr)
    return 0 if passed else 1
