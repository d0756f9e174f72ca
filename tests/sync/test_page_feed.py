"""`PageFeed`: pull pages downloaded and prepared on a worker thread, handed over in order."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson
import pytest

from desktop.sync.page_feed import PageFeed, decode_page
from shared_models.errors import NetworkUnavailable


def _page(number: int, *, last: bool) -> bytes:
    change = {"seq": number, "resourceType": "Patient", "id": f"p{number}", "versionId": 1,
              "deleted": False, "resource": {"resourceType": "Patient", "id": f"p{number}",
                                             "gender": "female"}}  # fmt: skip
    return orjson.dumps({"changes": [change], "cursor": f"c{number + 1}", "has_more": not last})


def test_pages_come_in_order_each_fetched_from_the_previous_cursor() -> None:
    asked: list[str] = []

    def fetch(cursor: str) -> bytes:
        asked.append(cursor)
        number = int(cursor.removeprefix("c"))
        return _page(number, last=number == 4)

    with PageFeed(fetch, "c0") as feed:
        cursors = []
        while True:
            page = feed.next()
            cursors.append(page.cursor)
            if not page.has_more:
                break
    assert cursors == ["c1", "c2", "c3", "c4", "c5"]
    assert asked == ["c0", "c1", "c2", "c3", "c4"]


def test_an_error_of_the_worker_is_raised_where_the_page_is_awaited() -> None:
    def fetch(cursor: str) -> bytes:
        if cursor == "c1":
            raise NetworkUnavailable("GET /sync/pull: ConnectError")
        return _page(0, last=False)

    with PageFeed(fetch, "c0") as feed:
        assert feed.next().cursor == "c1"
        with pytest.raises(NetworkUnavailable):
            feed.next()


def test_closing_stops_a_worker_that_runs_ahead() -> None:
    """The writer fails mid-pull: close() must not wait for the rest of the feed."""
    fetched = threading.Event()

    def fetch(cursor: str) -> bytes:
        fetched.set()
        return _page(int(cursor.removeprefix("c")), last=False)  # an endless feed

    feed = PageFeed(fetch, "c0", depth=1)
    assert fetched.wait(5)
    begun = time.monotonic()
    feed.close()
    assert time.monotonic() - begun < 5
    assert not any(t.is_alive() for t in feed._threads)


def test_a_decoded_synthea_page_keeps_each_resource_once(shared_data: Path) -> None:
    bundle = orjson.loads(
        next((shared_data / "fhir-synthea" / "bundles-2019").glob("*.json")).read_bytes()
    )
    resources = [e["resource"] for e in bundle["entry"]]
    wire = [{"seq": n, "resourceType": r["resourceType"], "id": r["id"], "versionId": 1,
             "deleted": False, "resource": r} for n, r in enumerate(resources)]  # fmt: skip
    twice = wire + wire[:3]  # a page may carry a resource's versions several times
    page = decode_page(orjson.dumps({"changes": twice, "cursor": "x", "has_more": False}))
    assert page.received == len(twice)
    assert not page.prepared.removals and len(page.prepared.upserts.rows) == len(resources)
    stored = {(row[0], row[1]): orjson.loads(row[4]) for row in page.prepared.upserts.rows}
    assert stored[(resources[0]["resourceType"], resources[0]["id"])] == resources[0]
