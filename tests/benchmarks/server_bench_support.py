"""Shared pieces of the server benchmarks: a seeded database, a real `ehr-server serve`, load."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyotp

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 16
PASSWORD = "Load-Test-Passw0rd-42-long"


def cli(*args: str, database_url: str, data_dir: Path, stdin: str | None = None) -> str:
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "sync_server.cli", *args, "--data-dir", str(data_dir)],
        env=env, input=stdin, capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(
            f"ehr-server {args[0]} failed: {done.stdout[-500:]} {done.stderr[-1500:]}"
        )
    return done.stdout


@contextmanager
def served(database_url: str, data_dir: Path, port: int, workers: int = 2) -> Iterator[str]:
    """A real `ehr-server serve` subprocess; yields its base URL; stops it with SIGTERM."""
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sync_server.cli", "serve", "--port", str(port),
         "--workers", str(workers), "--data-dir", str(data_dir)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("ehr-server serve did not start")
            time.sleep(0.3)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def sign_in(base: str, username: str, totp_secret: str) -> str:
    response = httpx.post(
        f"{base}/auth/login",
        json={"username": username, "password": PASSWORD,
              "otp": pyotp.TOTP(totp_secret).now(), "workstation_id": "benchmark"},
        timeout=30,
    )  # fmt: skip
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def rate(worker: Callable[[int, Callable[[], bool]], int], seconds: float) -> float:
    """Operations per second of CLIENTS threads running `worker(i, keep_going)` for `seconds`."""
    counts = [0] * CLIENTS
    start = threading.Barrier(CLIENTS + 1)
    stop_at = [0.0]

    def run(i: int) -> None:
        start.wait()
        counts[i] = worker(i, lambda: time.perf_counter() < stop_at[0])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - began)


def http_worker(
    base: str, token: str, paths: list[str]
) -> Callable[[int, Callable[[], bool]], int]:
    """Keep-alive GETs of `paths` (round robin); every answer must be 200."""
    host, port = base.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}

    def work(i: int, keep_going: Callable[[], bool]) -> int:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        done = 0
        while keep_going():
            conn.request("GET", paths[(i * 7919 + done) % len(paths)], headers=headers)
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status
            done += 1
        conn.close()
        return done

    return work
