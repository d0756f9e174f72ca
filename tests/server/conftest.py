"""Server fixtures: a migrated database, the app on it, and a live server on 127.0.0.1.

`start_live_server(app)` runs uvicorn in a background thread on a free port (real
HTTP). The session-wide `live_server` serves a shared database in demo mode;
modules that need a database of their own (the big import round trip) build one
with `server_for_new_database()`. Tests talk to it with `fhir_client`, the one
place that knows how a test request is authenticated. Modules where every
request must sign in use `server` (a live server of their own, `secure_server`
from identity_support) and, for the location rules, `sites`: the two-site
clinic seeded on it.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from sync_server.api.deps import get_request_context
from sync_server.app import create_app
from sync_server.config import Settings
from sync_server.db.engine import make_engine, migrate
from sync_server.services.context import RequestContext

# This folder's helpers, also when this file is imported as `tests.server.conftest`.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
import identity_support
from identity_support import TwoSites, seed_two_sites


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    engine: Engine

    @property
    def fhir_url(self) -> str:
        return f"{self.url}/fhir/R4"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def start_live_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 in a thread; yields its base URL; stops it afterwards."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("live server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def settings_for_tests(**overrides: object) -> Settings:
    """Settings for tests: demo mode lets the placeholder request context through."""
    values: dict[str, object] = {"demo_mode": True, "database_url": None}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def server_for_new_database(
    create_database: Callable[[], str],
) -> Callable[..., AbstractContextManager[LiveServer]]:
    """Factory: a fresh migrated database with an app and a live server on it."""

    @contextmanager
    def make(**settings: object) -> Iterator[LiveServer]:
        engine = make_engine(create_database())
        migrate(engine)
        app = create_app(settings_for_tests(**settings), engine)
        # Until the bearer sign-in fixtures exist, record tests act as the system context.
        app.dependency_overrides[get_request_context] = lambda: RequestContext.for_system("tests")
        with start_live_server(app) as url:
            yield LiveServer(url, app, engine)
        engine.dispose()

    return make


@pytest.fixture(scope="session")
def live_server(
    server_for_new_database: Callable[..., AbstractContextManager[LiveServer]],
) -> Iterator[LiveServer]:
    """One live server on one migrated database for the whole session (tests share it)."""
    with server_for_new_database() as server:
        yield server


def auth_headers(server: LiveServer) -> dict[str, str]:
    """Headers that sign a test request in (none while the system context is used)."""
    return {}


def client_for(server: LiveServer) -> httpx.Client:
    """An HTTP client for the FHIR base of `server`, signed in as the tests need."""
    return httpx.Client(base_url=server.fhir_url, timeout=60, headers=auth_headers(server))


@pytest.fixture(scope="module")
def fhir_client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with client_for(live_server) as client:
        yield client


#: A live server on a fresh database where every request must sign in (one per module).
secure_server = identity_support.secure_server


@pytest.fixture(scope="module")
def server(secure_server: Any) -> Any:
    """The module's signed-in-only live server (`identity_support.secure_server`)."""
    return secure_server


@pytest.fixture(scope="module")
def sites(server: Any, shared_data: Path) -> TwoSites:
    return seed_two_sites(server, shared_data)
