"""Identity and audit subcommands of `ehr-server` (create-user, audit verify)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the identity subcommands to the `ehr-server` parser."""
