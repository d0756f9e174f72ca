"""Shared setup of the desktop sync benchmarks (`tests/benchmarks/test_sync_client_*.py`).

A real `ehr-server serve` process on its own migrated database (so the server
does not share the client's interpreter and GIL), a keychain in a file, and a
helper that signs a fresh workstation in. Benchmarks print figures beside the
raw limit they are compared with; they never assert on time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = Path(__file__).resolve().parent.parent
for _folder in ("sync", "server", "desktop"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(_TESTS / _folder))

from desktop_sync_support import (  # noqa: E402
    ServerProcess,
    create_user_on,
    file_keychain,
    signed_in,
)

from desktop.services.workstation import Workstation  # noqa: E402
from sync_server.db.engine import make_engine, migrate  # noqa: E402
from tests.benchmarks.sync_bench_support import cpu_seconds  # noqa: E402


class BenchServer(ServerProcess):
    """A server process whose `start` returns once the worker is nearly idle.

    The worker builds every resource type's validator in a background thread
    after it starts serving (a few seconds of CPU); a figure measured during
    that one-off work would not be the steady state.
    """

    def start(self) -> None:
        super().start()
        assert self.proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            before = cpu_seconds(self.proc.pid)
            time.sleep(0.5)
            if cpu_seconds(self.proc.pid) - before < 0.05:  # under 10 % of one core
                return


@pytest.fixture(scope="module")
def bench_keychain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with file_keychain(tmp_path_factory.mktemp("xdg")) as path:
        yield path


@pytest.fixture(scope="module")
def bench_server(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BenchServer]:
    """A migrated, empty database and a server process on it (started by the test)."""
    url = create_database()
    engine = make_engine(url)
    migrate(engine)
    server = BenchServer.on(url, engine, tmp_path_factory.mktemp("server-data"))
    try:
        yield server
    finally:
        server.stop()
        engine.dispose()


def new_workstation(server: ServerProcess, folder: Path, username: str) -> Workstation:
    """A fresh profile signed in online as a new physician at the test location."""
    return signed_in(folder, server.url, create_user_on(server, username))


def sync_now(ws: Workstation, **options: Any) -> Any:
    """One engine sync, without the facade's policy check (what the figures measure)."""
    from desktop.sync import engine

    return engine.run_sync(ws._db(), ws._authed_api(), workstation_id=ws.workstation_id, **options)
