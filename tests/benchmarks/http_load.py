"""A load generator run as its own process, so it does not share the GIL with the test.

`python -m tests.benchmarks.http_load BASE SECONDS CLIENTS` reads the bearer
token and the paths (JSON) from stdin, runs CLIENTS threads of keep-alive GETs
round robin over the paths for SECONDS, and prints one JSON line:
`{"requests", "seconds", "cpu_seconds"}` (`cpu_seconds`: this process's own
CPU, to be reported beside the rate it reached). Every answer must be 200.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time


def run(base: str, token: str, paths: list[str], seconds: float, clients: int) -> dict[str, float]:
    host, port = base.removeprefix("http://").split(":")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    counts = [0] * clients
    failures: list[int] = []
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def work(i: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        start.wait()
        done = 0
        while time.perf_counter() < stop_at[0]:
            conn.request("GET", paths[(i * 7919 + done) % len(paths)], headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)
                break
            done += 1
        conn.close()
        counts[i] = done

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    cpu_before, began = time.process_time(), time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"HTTP {failures[0]} during the load")
    return {
        "requests": sum(counts),
        "seconds": time.perf_counter() - began,
        "cpu_seconds": time.process_time() - cpu_before,
    }


def main() -> None:
    base, seconds, clients = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    job = json.load(sys.stdin)
    print(json.dumps(run(base, job["token"], job["paths"], seconds, clients)))


if __name__ == "__main__":
    main()
