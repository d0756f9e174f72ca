"""`ehr-server serve --workers 2 --tls-cert/--tls-key` with JSON logs and multiprocess metrics.

Slow: starts the real server (two worker processes) on a real database.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sync_server.db.engine import make_engine, migrate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packaging"))
from live_http import make_tls_material

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_workers_behind_tls_count_requests_together_and_log_json(
    create_database, tmp_path: Path
) -> None:
    url = create_database()
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    tls = make_tls_material(tmp_path / "tls")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": url, "EHR_DATA_DIR": str(tmp_path / "data"),
           "EHR_LOG_JSON": "true", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "EHR_SERVER_SECRET": "metrics-test-secret-0123456789abcdef"}  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "sync_server.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2",
             "--tls-cert", str(tls.cert), "--tls-key", str(tls.key)],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    try:
        pinned = ssl.create_default_context(cafile=str(tls.ca_bundle))
        with httpx.Client(verify=pinned, timeout=10) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get(f"{base}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                assert server.poll() is None, log.read_text()[-2000:]
                time.sleep(0.3)
            for _ in range(40):  # new connections: both workers get some
                with httpx.Client(verify=pinned, timeout=10) as fresh:
                    assert fresh.get(f"{base}/healthz").status_code == 200
            text = client.get(f"{base}/metrics").text
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/healthz", verify=True, timeout=5)  # not a publicly trusted cert
    finally:
        server.terminate()
        server.wait(timeout=30)
    total = sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ehr_http_requests_total" and s.labels.get("route") == "/healthz"
    )
    assert total >= 41
    pids = {p.name.split("_")[-1] for p in metrics_dir.glob("*.db")}
    assert len(pids) >= 2, "both workers recorded metrics"
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert lines, log.read_text()[-2000:]
    assert all({"ts", "level", "logger", "msg"} <= set(json.loads(line)) for line in lines)
