"""Benchmark: chart load and patient search on the encrypted cache vs an unencrypted copy.

50,000 generated patients plus one with 5,000 observations (and problems,
medications, allergies, notes, appointments). Prints p50/p95 beside the
DESIGN.md targets (chart p95 < 50 ms, search p95 < 20 ms) and the same
queries on a plain SQLite copy of the same file (the ratio is the cost of
encryption). Also prints the bulk-apply rate beside a raw SQLCipher insert of
the same JSON (the sync engineer's initial-pull budget). Never asserts on time.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import sqlcipher3

from desktop.services.chart_loader import load_chart
from desktop.services.patient_search import search_patients
from desktop.store.database import ChartDatabase, Connection, connect
from desktop.store.keyslots import new_key
from desktop.store.remote_changes import RemoteChange, apply_remote_page

PATIENTS = 50_000
OBSERVATIONS = 5_000
PAGE = 5_000
FAMILIES = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
]
GIVEN = [
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Amira",
    "Kenji",
    "Olga",
    "Thabo",
    "Ines",
    "Mateo",
]
VITALS = [("8867-4", "/min", 60, 100), ("8310-5", "Cel", 36, 38), ("29463-7", "kg", 50, 110),
          ("59408-5", "%", 92, 100), ("9279-1", "/min", 12, 20)]  # fmt: skip
VITAL_CAT = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                          "code": "vital-signs"}]}]  # fmt: skip


LOCATION = {"reference": "Location/loc-1"}


def _loinc(code: str) -> dict[str, object]:
    return {"coding": [{"system": "http://loinc.org", "code": code}]}


def _qty(value: float, unit: str) -> dict[str, object]:
    return {"value": value, "unit": unit}


def _patient(rng: random.Random, n: int) -> dict[str, object]:
    birth = datetime(1930, 1, 1) + timedelta(days=rng.randrange(0, 33_000))
    return {
        "resourceType": "Patient",
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": f"MRN{n:07d}"}],
        "name": [{"use": "official", "family": f"{rng.choice(FAMILIES)}{n % 97}",
                  "given": [rng.choice(GIVEN)]}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": birth.date().isoformat(),
    }  # fmt: skip


def _big_chart(rng: random.Random, pid: str) -> list[dict[str, object]]:
    now = datetime.now(UTC)
    ref = {"reference": f"Patient/{pid}"}
    out: list[dict[str, object]] = []
    for i in range(OBSERVATIONS):
        when = now - timedelta(hours=i * 17)  # ~10 years of readings
        obs: dict[str, object] = {
            "resourceType": "Observation", "id": str(uuid.uuid4()), "status": "final",
            "category": VITAL_CAT, "subject": ref, "effectiveDateTime": when.isoformat(),
        }  # fmt: skip
        if i % 6 == 0:
            obs["code"] = _loinc("85354-9")
            obs["component"] = [
                {"code": _loinc("8480-6"), "valueQuantity": _qty(rng.randint(100, 160), "mm[Hg]")},
                {"code": _loinc("8462-4"), "valueQuantity": _qty(rng.randint(60, 100), "mm[Hg]")},
            ]
        else:
            code, unit, low, high = VITALS[i % len(VITALS)]
            obs["code"] = _loinc(code)
            obs["valueQuantity"] = _qty(rng.uniform(low, high), unit)
        out.append(obs)
    for i in range(30):
        out.append({"resourceType": "Condition", "id": str(uuid.uuid4()), "subject": ref,
                    "clinicalStatus": {"coding": [{"code": "active" if i % 3 else "resolved"}]},
                    "code": {"text": f"Problem {i}"}, "onsetDateTime": "2015-01-01"})  # fmt: skip
        out.append({"resourceType": "MedicationRequest", "id": str(uuid.uuid4()), "subject": ref,
                    "status": "active" if i % 2 else "stopped", "intent": "order",
                    "medicationCodeableConcept": {"text": f"Drug {i}"},
                    "authoredOn": "2020-01-01"})  # fmt: skip
    for i in range(5):
        out.append({"resourceType": "AllergyIntolerance", "id": str(uuid.uuid4()), "patient": ref,
                    "clinicalStatus": {"coding": [{"code": "active"}]},
                    "code": {"text": f"Allergen {i}"}})  # fmt: skip
    for i in range(200):
        out.append({"resourceType": "DocumentReference", "id": str(uuid.uuid4()), "subject": ref,
                    "status": "current", "docStatus": "final", "description": f"Visit note {i}",
                    "date": (now - timedelta(days=i * 9)).isoformat(),
                    "content": [{"attachment": {"contentType": "text/plain",
                                                "data": "U2VlbiB0b2RheS4=" * 40}}]})  # fmt: skip
    for i in range(5):
        out.append({"resourceType": "Appointment", "id": str(uuid.uuid4()), "status": "booked",
                    "start": (now + timedelta(days=i + 1)).isoformat(),
                    "participant": [{"actor": ref, "status": "accepted"},
                                    {"actor": LOCATION, "status": "accepted"}]})  # fmt: skip
    return out


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def _measure(fn: Callable[[], object], runs: int) -> tuple[float, float, float, float]:
    """Wall p50/p95 and CPU p50/p95 in ms (CPU shows the cost on a machine shared by others)."""
    wall, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return (*_percentiles(wall), *_percentiles(cpu))


@pytest.mark.benchmark
def test_chart_and_search_encrypted_vs_plain(tmp_path: Path) -> None:
    rng = random.Random(5)
    key = new_key()
    patients = [_patient(rng, n) for n in range(PATIENTS)]
    big_id = str(patients[0]["id"])
    resources = patients + _big_chart(rng, big_id)
    blobs = [orjson.dumps(r) for r in resources]
    changes = [
        RemoteChange(str(r["resourceType"]), str(r["id"]), 1, resource_json=b)
        for r, b in zip(resources, blobs, strict=True)
    ]
    budget_start = time.perf_counter()

    # Raw limit: the same JSON into one plain table of an SQLCipher file, one transaction per page.
    raw = connect(tmp_path / "raw.db", new_key())
    raw.execute("CREATE TABLE r (t TEXT, id TEXT, v INTEGER, json BLOB)")
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(changes), PAGE):
        rows = [(c.resource_type, c.id, 1, c.resource_json) for c in changes[i : i + PAGE]]
        raw.execute("BEGIN")
        raw.executemany("INSERT INTO r VALUES (?, ?, ?, ?)", rows)
        raw.execute("COMMIT")
    raw_rate = len(changes) / (time.perf_counter() - start)
    raw_cpu_rate = len(changes) / (time.process_time() - cpu)
    raw.close()

    db = ChartDatabase(tmp_path / "chart.db", key)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(changes), PAGE):
        apply_remote_page(db, changes[i : i + PAGE], f"c{i}")
    apply_rate = len(changes) / (time.perf_counter() - start)
    apply_cpu_rate = len(changes) / (time.process_time() - cpu)
    enc = db.connection()
    enc.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    plain_path = tmp_path / "plain.db"
    enc.execute(f"ATTACH DATABASE '{plain_path}' AS plaintext KEY ''")
    enc.execute("SELECT sqlcipher_export('plaintext')")
    enc.execute("DETACH DATABASE plaintext")
    plain: Connection = sqlcipher3.connect(str(plain_path), isolation_level=None)
    plain.execute("PRAGMA cache_size = -131072")
    with pytest.raises(sqlcipher3.DatabaseError):  # the copy really is unencrypted SQLite
        bad = sqlcipher3.connect(str(tmp_path / "chart.db"))
        bad.execute("SELECT count(*) FROM sqlite_master").fetchone()

    mrns = [str(p["identifier"][0]["value"]) for p in rng.sample(patients, 300)]  # type: ignore[index]
    prefixes = [str(p["name"][0]["family"])[:4] for p in rng.sample(patients, 300)]  # type: ignore[index]
    chart = load_chart(enc, big_id)
    print(f"\nchart of the big patient: {len(chart.vitals)} vital readings (2 years), "
          f"{len(chart.problems)} problems, {len(chart.medications)} meds, "
          f"{len(chart.notes)} notes, {len(chart.appointments)} appointments")  # fmt: skip
    assert len(chart.vitals) > 500 and len(chart.notes) == 200
    results: dict[str, dict[str, tuple[float, float, float, float]]] = {}
    for label, conn in (("encrypted", enc), ("plain", plain)):
        load_chart(conn, big_id)  # warm the page cache, as an open chart does
        by_mrn, by_prefix = iter(mrns), iter(prefixes)
        results[label] = {
            "chart": _measure(lambda c=conn: load_chart(c, big_id), 60),
            "search name prefix": _measure(
                lambda c=conn, q=by_prefix: search_patients(c, next(q), 50), len(prefixes)
            ),
            "search MRN": _measure(
                lambda c=conn, q=by_mrn: search_patients(c, next(q), 50), len(mrns)
            ),
        }
        assert search_patients(conn, mrns[0])[0].mrn == mrns[0]
    targets = {"chart": 50.0, "search name prefix": 20.0, "search MRN": 20.0}
    print(f"{'query':<19} {'encrypted p50/p95 ms':>21} {'plain p50/p95 ms':>17} {'ratio':>6}"
          f" {'CPU enc p50/p95':>16} {'CPU plain p50/p95':>18} {'target p95':>10}")  # fmt: skip
    for name, target in targets.items():
        e50, e95, ec50, ec95 = results["encrypted"][name]
        p50, p95, pc50, pc95 = results["plain"][name]
        print(f"{name:<19} {e50:>9.2f} / {e95:>8.2f} {p50:>7.2f} / {p95:>7.2f} {e95 / p95:>6.2f}"
              f" {ec50:>7.2f} / {ec95:>6.2f} {pc50:>8.2f} / {pc95:>7.2f}"
              f" {target:>10.0f}")  # fmt: skip
    print(f"bulk apply_remote_page: {apply_rate:,.0f} resources/s wall, {apply_cpu_rate:,.0f}/s "
          f"CPU, with index rows; raw SQLCipher insert of the same JSON (no index): "
          f"{raw_rate:,.0f}/s wall, {raw_cpu_rate:,.0f}/s CPU (ratio wall "
          f"{apply_rate / raw_rate:.2f}, CPU {apply_cpu_rate / raw_cpu_rate:.2f}; "
          "whole-pull target >= 0.33)")  # fmt: skip
    print(f"benchmark wall time {time.perf_counter() - budget_start:.1f} s")
    plain.close()
    db.close()
