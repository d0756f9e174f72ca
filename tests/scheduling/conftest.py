"""Scheduling test fixtures: a live server with real sign-in, and a seeded clinic.

Reuses the record engineer's live-server factory (`tests/server/conftest.py`)
and the identity engineer's helpers (`tests/server/identity_support.py`), as
`tests/sync/conftest.py` does.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent.parent
for folder in ("server", "desktop", "sync", "scheduling"):
    if str(TESTS / folder) not in sys.path:
        sys.path.insert(0, str(TESTS / folder))


from scheduling_support import (  # noqa: E402
    SchedulingClinic,
    local_profile,  # noqa: F401 - re-exported fixture
    module_keychain,  # noqa: F401 - re-exported fixture
    seed_scheduling_clinic,
    server_fixtures,
)

server_for_new_database = server_fixtures().server_for_new_database

from identity_support import secure_server  # noqa: E402, F401 - re-exported fixture


@pytest.fixture(scope="module")
def clinic(secure_server: Any, shared_data: Path) -> SchedulingClinic:  # noqa: F811
    return seed_scheduling_clinic(secure_server, shared_data)
