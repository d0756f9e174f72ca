"""The first download of a workstation's charts, pausable.

A pause takes effect between pages: each page is stored with its cursor in
one transaction before `pulled` is called, so raising there stops the sync
with everything received kept, and the next sync continues from that page.
"""

from __future__ import annotations

from desktop.sync.progress import SyncProgress
from shared_models.errors import ClinicError


class DownloadPaused(ClinicError):
    user_message = "The download is paused. It continues where it stopped at the next sync."
    help_topic = "sync"


class PausableProgress(SyncProgress):
    def __init__(self) -> None:
        super().__init__()
        self.pause_requested = False

    def pause(self) -> None:
        """Ask the running sync to stop after the page it is storing."""
        self.pause_requested = True

    def pulled(self, resources: int, size: int) -> None:
        super().pulled(resources, size)
        if self.pause_requested:
            raise DownloadPaused("initial download paused by the user")


def describe(pulled: int, size: int, elapsed: float) -> str:
    """ "12,345 records (34.5 MB) in 1 min 20 s" for the progress dialog."""
    return f"{pulled:,} records ({size / 1e6:.1f} MB) in {_duration(elapsed)}"


def describe_left(pulled: int, expected: int, seconds_left: float | None) -> str:
    """ "12,345 of about 100,000 records, about 2 min 10 s left" while a download runs."""
    text = f"{pulled:,} of about {max(expected, pulled):,} records"
    if seconds_left is None:
        return text
    if seconds_left < 1:
        return f"{text}, almost done"
    return f"{text}, about {_duration(seconds_left)} left"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"
