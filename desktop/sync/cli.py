"""`ehr-desktop sync --profile DIR [--server URL]`: one sync, headless, for IT and scripts.

Registered by `desktop.cli` (which passes its shared flag and sign-in helpers,
so this module needs nothing above `desktop.sync`). Prints a one-line summary
and the status afterwards; counts only, never PHI. Exit status 0 when the sync
completed, 3 (via `desktop.cli`) with a clinician-readable message otherwise.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    add_profile_args: Callable[..., None],
    open_signed_in: Callable[[argparse.Namespace], Any],
) -> None:
    parser = subparsers.add_parser("sync", help="push local changes and pull the server's")
    add_profile_args(parser, sign_in_required=True)

    def handler(args: argparse.Namespace) -> int:
        with open_signed_in(args) as ws:
            report = ws.sync()
            print(f"sync complete: {report.summary()}", flush=True)
            status = ws.status()
            print(f"pending_changes: {status.pending}")
            print(f"open_conflicts: {status.conflicts}")
        return 0

    parser.set_defaults(handler=handler)
