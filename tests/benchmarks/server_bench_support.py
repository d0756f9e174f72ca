"""Shared pieces of the server benchmarks: a seeded database, a real `ehr-server serve`, load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
        _wait_until_idle(port)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_until_idle(port: int, timeout: float = 60.0) -> None:
    """Wait until the server's processes are nearly idle, so a figure is the steady state.

    Each worker builds the validators of every resource type in a background
    thread after it starts serving (a few seconds of CPU): a load started at
    once would share the cores with that one-off work.
    """
    pids = _server_pids(port)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _cpu_seconds(pids)
        time.sleep(0.5)
        if _cpu_seconds(pids) - before < 0.05:  # under 10 % of one core
            return


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


@dataclass(frozen=True)
class LoadResult:
    """A load run against a served port: its rate and the CPU each side spent per request."""

    rate: float
    server_cpu_ms: float
    client_cpu_ms: float

    def describe(self) -> str:
        return (
            f"{self.rate:,.0f} req/s with {CLIENTS} clients (server CPU {self.server_cpu_ms:.2f}"
            f" ms/req over all its processes, load generator {self.client_cpu_ms:.2f} ms/req)"
        )


def _server_pids(port: int) -> list[int]:
    """The `serve --port PORT` process and its children (uvicorn workers)."""
    pids: list[int] = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"serve" in cmdline and str(port).encode() in cmdline and proc.name.isdigit():
            pids.append(int(proc.name))
    children: list[int] = []
    for pid in pids:
        try:
            tasks = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        children.extend(int(c) for c in tasks)
    return pids + children


def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def http_load(base: str, token: str, paths: list[str], seconds: float) -> LoadResult:
    """GETs of `paths` from a separate load-generator process (`http_load.py`), CPU measured."""
    pids = _server_pids(int(base.rsplit(":", 1)[1]))
    server_before = _cpu_seconds(pids)
    done = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.http_load", base, str(seconds), str(CLIENTS)],
        input=json.dumps({"token": token, "paths": paths}), capture_output=True, text=True,
        timeout=seconds + 120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    )  # fmt: skip
    server_cpu = _cpu_seconds(pids) - server_before
    figures = json.loads(done.stdout)
    requests = max(figures["requests"], 1)
    return LoadResult(
        rate=figures["requests"] / figures["seconds"],
        server_cpu_ms=server_cpu / requests * 1000,
        client_cpu_ms=figures["cpu_seconds"] / requests * 1000,
    )
