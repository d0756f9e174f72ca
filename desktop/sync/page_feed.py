"""Download and prepare pull pages ahead of the writer, on worker threads.

Storing a page is mostly SQLite work (encrypting pages, B-tree inserts), which
releases the GIL; downloading one is mostly waiting for the server, and
preparing one (JSON decode, index-row extraction) is pure Python. So while the
engine stores page N in its transaction, page N+1 is prepared and page N+2
downloaded: the server, the preparing and the storing overlap.

Nothing here touches the database: a page only counts once the engine has
stored it together with its cursor, so a page prepared but not stored when
the process dies is simply downloaded again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from desktop.store.remote_changes import PreparedPage, prepare_wire


@dataclass(frozen=True)
class PulledPage:
    """One `/sync/pull` answer, decoded and ready for `apply_remote_page`."""

    prepared: PreparedPage
    cursor: str
    has_more: bool
    #: Changes in the page as sent (before keeping one per resource), and its size.
    received: int
    size: int
    #: About how many changes follow (only on a page asked for with `estimate`).
    remaining: int | None = None
    #: On the last page: the fingerprint of the server's open conflicts for this user.
    open_conflicts: str | None = None


def decode_page(raw: bytes) -> PulledPage:
    """Parse a pull answer once (orjson) and extract its rows."""
    return _prepared(_Downloaded(orjson.loads(raw), len(raw)))


@dataclass(frozen=True)
class _Downloaded:
    page: dict[str, Any]
    size: int

    @property
    def cursor(self) -> str:
        return str(self.page["cursor"])

    @property
    def has_more(self) -> bool:
        return bool(self.page["has_more"])


def _prepared(downloaded: _Downloaded) -> PulledPage:
    wire = downloaded.page["changes"]
    prepared = prepare_wire(wire)
    remaining, digest = downloaded.page.get("remaining"), downloaded.page.get("open_conflicts")
    return PulledPage(
        prepared, downloaded.cursor, downloaded.has_more, len(wire), downloaded.size,
        remaining if isinstance(remaining, int) else None,
        digest if isinstance(digest, str) else None,
    )  # fmt: skip


_Item = TypeVar("_Item")


class PageFeed:
    """Pages from `cursor` onwards, fetched with `fetch(cursor)`, in order.

    Two worker threads: one downloads (and parses, which yields the next
    cursor, so the next download starts at once), one extracts the rows. At
    most `depth` pages wait between stages. `next()` re-raises a worker's
    error, after which the feed is finished. Always `close()` it (it is a
    context manager): that stops the workers even while the engine is failing.
    """

    def __init__(self, fetch: Callable[[str], bytes], cursor: str, *, depth: int = 1) -> None:
        self._fetch = fetch
        self._downloaded: queue.Queue[_Downloaded | BaseException] = queue.Queue(maxsize=depth)
        self._ready: queue.Queue[PulledPage | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._download, args=(cursor,), name="sync-pull", daemon=True),
            threading.Thread(target=self._prepare, name="sync-prepare", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> PageFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next(self) -> PulledPage:
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            while thread.is_alive():
                for waiting in (self._downloaded, self._ready):  # unblock a waiting hand-over
                    with suppress(queue.Empty):
                        waiting.get_nowait()
                thread.join(timeout=0.05)

    def _download(self, cursor: str) -> None:
        while not self._stop.is_set():
            item: _Downloaded | BaseException
            try:
                raw = self._fetch(cursor)
                downloaded = _Downloaded(orjson.loads(raw), len(raw))
                has_more, cursor = downloaded.has_more, downloaded.cursor
                item = downloaded
            except BaseException as exc:  # handed on to the engine's thread, which raises it
                item, has_more = exc, False
            if not self._hand_over(self._downloaded, item) or not has_more:
                return

    def _prepare(self) -> None:
        while True:
            downloaded = self._take(self._downloaded)
            if downloaded is None:
                return
            try:
                item: PulledPage | BaseException = (
                    downloaded if isinstance(downloaded, BaseException) else _prepared(downloaded)
                )
            except BaseException as exc:
                item = exc
            if not self._hand_over(self._ready, item) or not isinstance(item, PulledPage):
                return
            if not item.has_more:
                return

    def _hand_over(self, to: queue.Queue[_Item], item: _Item) -> bool:
        while not self._stop.is_set():
            try:
                to.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _take(self, source: queue.Queue[_Item]) -> _Item | None:
        while not self._stop.is_set():
            try:
                return source.get(timeout=0.05)
            except queue.Empty:
                continue
        return None
