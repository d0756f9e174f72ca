"""Prometheus metrics at `/metrics`: request rates and latencies, sync queues and conflicts.

- `ehr_http_requests_total{method,route,status}` and
  `ehr_http_request_duration_seconds{method,route}` come from an ASGI
  middleware. `route` is the route *template* (`/fhir/R4/Patient/{id}`), never
  the raw path, so no id or search value (PHI) becomes a label.
- `ehr_sync_push_changes_total{status}` counts push results
  (applied/merged/conflict/rejected) and `ehr_sync_pull_changes_total` the
  changes served; the sync service calls `record_push_results` / `record_pull`.
- `ehr_sync_queue_size{queue}` is read at scrape time from a callable the app
  passes in (for example the open conflict review queue and the changes not
  yet visible to pulls); `ehr_sync_conflicts_open` is its `conflicts_open` entry.

With several worker processes set `PROMETHEUS_MULTIPROC_DIR` to an empty
directory per pod: counters and histograms are then summed over the workers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

REQUESTS = Counter("ehr_http_requests", "HTTP requests served", ["method", "route", "status"])
LATENCY = Histogram(
    "ehr_http_request_duration_seconds",
    "Time to serve an HTTP request",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PUSH_CHANGES = Counter("ehr_sync_push_changes", "Pushed changes by result", ["status"])
PULL_CHANGES = Counter("ehr_sync_pull_changes", "Changes served to pulls")

#: Returns queue name -> current size; read on each scrape.
QueueSizes = Callable[[], Mapping[str, int]]


def record_push_results(statuses: Iterable[str]) -> None:
    """Count one push batch's results (`applied`, `merged`, `conflict`, `rejected`)."""
    for status in statuses:
        PUSH_CHANGES.labels(status=status).inc()


def record_pull(change_count: int) -> None:
    PULL_CHANGES.inc(change_count)


class SyncQueueCollector(Collector):
    """Gauges read from the database when Prometheus scrapes."""

    def __init__(self, source: QueueSizes) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        try:
            sizes = dict(self._source())
        except Exception:  # a scrape must still answer when the database is down
            log.warning("sync queue sizes unavailable", exc_info=True)
            sizes = {}
        queues = GaugeMetricFamily("ehr_sync_queue_size", "Items waiting", labels=["queue"])
        for name, size in sorted(sizes.items()):
            queues.add_metric([name], size)
        yield queues
        conflicts = GaugeMetricFamily("ehr_sync_conflicts_open", "Conflicts awaiting review")
        if "conflicts_open" in sizes:
            conflicts.add_metric([], sizes["conflicts_open"])
        yield conflicts


class MetricsMiddleware:
    """Pure ASGI middleware timing each HTTP request (cheaper than BaseHTTPMiddleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            REQUESTS.labels(method=method, route=template, status=str(status[0])).inc()
            LATENCY.labels(method=method, route=template).observe(time.perf_counter() - started)


def metrics_router(queue_sizes: QueueSizes | None = None) -> APIRouter:
    """`GET /metrics` in the Prometheus text format."""
    router = APIRouter(tags=["operations"])
    queue_registry = CollectorRegistry(auto_describe=True)
    if queue_sizes is not None:
        queue_registry.register(SyncQueueCollector(queue_sizes))

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
        body = generate_latest(registry) + generate_latest(queue_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router


def install_metrics(app: FastAPI, queue_sizes: QueueSizes | None = None) -> None:
    """Time every request and serve `/metrics`."""
    app.add_middleware(MetricsMiddleware)
    app.include_router(metrics_router(queue_sizes))
