"""Fixtures for the release tooling in `packaging/`.

`packaging/` holds scripts, not an importable package (the name would shadow the
`packaging` library), so its directory is put on `sys.path` here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PACKAGING_DIR = Path(__file__).resolve().parents[2] / "packaging"
sys.path.insert(0, str(PACKAGING_DIR))


@pytest.fixture(scope="session")
def packaging_dir() -> Path:
    return PACKAGING_DIR
