"""Operations subcommands of `ehr-server` (backup, restore)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the operations subcommands to the `ehr-server` parser."""
