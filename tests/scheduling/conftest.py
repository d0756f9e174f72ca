"""Scheduling test fixtures: a live server with real sign-in, and a seeded clinic.

Reuses the record engineer's live-server factory (`tests/server/conftest.py`)
and the identity engineer's helpers (`tests/server/identity_support.py`), as
`tests/sync/conftest.py` does.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

TESTS = Path(__file__).resolve().parent.parent
for folder in ("server", "desktop", "sync", "scheduling"):
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

from identity_support import secure_server  # noqa: E402, F401 - re-exported fixture
from scheduling_support import SchedulingClinic, seed_scheduling_clinic  # noqa: E402


@pytest.fixture(scope="module")
def clinic(secure_server: Any, shared_data: Path) -> SchedulingClinic:  # noqa: F811
    return seed_scheduling_clinic(secure_server, shared_data)


@pytest.fixture(scope="module")
def module_keychain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """`keyring` writes to a file of this module, never to the real keychain."""
    path = tmp_path_factory.mktemp("xdg") / "python_keyring" / "keyring_pass.cfg"
    path.parent.mkdir(parents=True)
    backend = PlaintextKeyring()
    backend.file_path = str(path)
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield path
    keyring.set_keyring(previous)
