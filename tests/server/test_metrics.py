"""`/metrics` over real HTTP: request counts and latencies by route template, sync figures."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from prometheus_client.parser import text_string_to_metric_families

from sync_server.api.metrics import install_metrics, record_pull, record_push_results

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packaging"))
from live_http import serve_in_thread


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def base_url() -> str:
    app = FastAPI()
    queue = {"conflicts_open": 3, "outbox_unapplied": 7}

    @app.get("/fhir/R4/Patient/{patient_id}")
    def read(patient_id: str) -> dict[str, str]:
        if patient_id == "missing":
            raise HTTPException(404)
        return {"resourceType": "Patient", "id": patient_id}

    install_metrics(app, queue_sizes=lambda: queue)
    with serve_in_thread(app) as url:
        yield url


def test_requests_are_counted_by_route_template_not_raw_path(base_url: str) -> None:
    with httpx.Client(base_url=base_url) as client:
        before = _samples(client.get("/metrics").text)
        for _ in range(3):
            client.get("/fhir/R4/Patient/pat-secret-123")
        client.get("/fhir/R4/Patient/missing")
        client.get("/no/such/route")
        text = client.get("/metrics").text
    after = _samples(text)
    ok = (
        "ehr_http_requests_total",
        (("method", "GET"), ("route", "/fhir/R4/Patient/{patient_id}"), ("status", "200")),
    )
    missing = (
        "ehr_http_requests_total",
        (("method", "GET"), ("route", "/fhir/R4/Patient/{patient_id}"), ("status", "404")),
    )
    assert after[ok] - before.get(ok, 0) == 3
    assert after[missing] - before.get(missing, 0) == 1
    assert (
        after[
            (
                "ehr_http_requests_total",
                (("method", "GET"), ("route", "unmatched"), ("status", "404")),
            )
        ]
        >= 1
    )
    count = (
        "ehr_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/fhir/R4/Patient/{patient_id}")),
    )
    assert after[count] - before.get(count, 0) == 4
    assert "pat-secret-123" not in text


def test_sync_queue_sizes_and_conflicts_are_exposed(base_url: str) -> None:
    record_push_results(["applied", "applied", "conflict"])
    record_pull(5)
    samples = _samples(httpx.get(f"{base_url}/metrics").text)
    assert samples[("ehr_sync_queue_size", (("queue", "conflicts_open"),))] == 3
    assert samples[("ehr_sync_queue_size", (("queue", "outbox_unapplied"),))] == 7
    assert samples[("ehr_sync_conflicts_open", ())] == 3
    assert samples[("ehr_sync_push_changes_total", (("status", "applied"),))] >= 2
    assert samples[("ehr_sync_push_changes_total", (("status", "conflict"),))] >= 1
    assert samples[("ehr_sync_pull_changes_total", ())] >= 5
