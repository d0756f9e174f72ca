"""Fixtures of the sync protocol tests: a signed-in-only server, a seeded clinic, workstations.

Each test module gets its own server and clinic (module scope): the pull tests
count exactly what a scope holds, so the pushes of another module must not
leak into it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sync_support import Clinic, SyncClient, seed_clinic, signed_in


@pytest.fixture(scope="module")
def clinic(server: Any, shared_data: Path) -> Clinic:
    return seed_clinic(server.engine, shared_data)


@pytest.fixture(scope="module")
def nurse(server: Any, clinic: Clinic) -> Iterator[SyncClient]:
    """A nurse at the main clinic, signed in over HTTP."""
    client = signed_in(server, "nurse", ["loc-main"])
    yield client
    client.close()


@pytest.fixture(scope="module")
def physician(server: Any, clinic: Clinic) -> Iterator[SyncClient]:
    """A physician at the main clinic, signed in over HTTP."""
    client = signed_in(server, "physician", ["loc-main"])
    yield client
    client.close()
