"""Desktop store tests: `keyring` writes to a file in the test's temp folder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring


@pytest.fixture(autouse=True)
def temp_keychain(tmp_path: Path) -> Iterator[Path]:
    """`keyring` stores in a file under the test's temp folder, never the real keychain."""
    # The file keyrings.alt's PlaintextKeyring uses under XDG_DATA_HOME, so a child
    # process given `keychain_env(path)` reads the same keychain.
    path = tmp_path / "xdg" / "python_keyring" / "keyring_pass.cfg"
    path.parent.mkdir(parents=True)
    backend = PlaintextKeyring()
    backend.file_path = str(path)  # type: ignore[misc]
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield path
    keyring.set_keyring(previous)


@pytest.fixture(scope="session")
def clinic(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[object]:
    """A live sync server with real sign-in on a fresh PostgreSQL database (shared)."""
    from desktop_live_server import clinic_server

    with clinic_server(create_database(), tmp_path_factory.mktemp("server-data")) as server:
        yield server
