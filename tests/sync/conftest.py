"""End-to-end sync fixtures: a live server with real sign-in, real SQLCipher profiles.

Reuses the record engineer's live-server factory (`tests/server/conftest.py`)
and the identity engineer's helpers (`tests/server/identity_support.py`), and
a keychain in a file (as `tests/desktop/conftest.py` does, but per module: the
workstations here live for a whole module), so nothing here duplicates how a
server is started or a user is created.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

TESTS = Path(__file__).resolve().parent.parent
for folder in ("server", "desktop", "sync"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))


def _load(name: str, relative: str) -> ModuleType:
    """Load another folder's conftest under its own name (its fixtures are re-exported)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


server_for_new_database = _load("server_fixtures", "server/conftest.py").server_for_new_database

from desktop_sync_support import file_keychain  # noqa: E402
from identity_support import secure_server  # noqa: E402, F401 - re-exported fixture


@pytest.fixture(scope="module", autouse=True)
def module_keychain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A keychain file per module: the workstations here live for a whole module."""
    with file_keychain(tmp_path_factory.mktemp("xdg")) as path:
        yield path
