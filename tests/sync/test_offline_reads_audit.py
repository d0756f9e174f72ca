"""Chart reads made offline reach the server's audit trail at the next sync, exactly once.

A real workstation (SQLCipher profile) reads charts with the server refusing
connections, then syncs to a real server on 127.0.0.1; an admin searches the
trail through `GET /fhir/R4/AuditEvent` like an auditor would.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from desktop_sync_support import (
    LOCATION,
    free_port,
    seed_charts,
    synced_workstation,
    synthea_patients,
)
from identity_support import TestUser, audit_rows, bearer, login, make_user
from sqlalchemy import text

from desktop.services.workstation import Workstation
from desktop.store import access_log
from desktop.sync.access_log_upload import send_access_log
from desktop.sync.conflict_sync import direct
from shared_models.offline_access import AccessLogBatch, AccessRecord, record_id
from sync_server.services.audit import seal_now
from sync_server.services.audit_chain import verify_chain

OFFLINE_SUBTYPE = {"system": "urn:ehr:audit", "code": "offline", "display": "offline access"}


@pytest.fixture(scope="module")
def users(secure_server: Any) -> dict[str, TestUser]:
    return {
        "reader": make_user(secure_server, "dr.reader", ["physician"], [LOCATION]),
        "other": make_user(secure_server, "dr.other", ["physician"], [LOCATION]),
        "auditor": make_user(secure_server, "auditor", ["admin"]),
    }


@pytest.fixture(scope="module")
def charts(secure_server: Any, shared_data: Path) -> Any:
    return seed_charts(secure_server.engine, synthea_patients(shared_data)[:3])


@pytest.fixture(scope="module")
def ws(
    secure_server: Any, users: dict[str, TestUser], tmp_path_factory: Any, charts: Any
) -> Iterator[Workstation]:
    folder = tmp_path_factory.mktemp("ws-reader")
    yield from synced_workstation(folder, secure_server.url, users["reader"])


@pytest.fixture(scope="module")
def auditor(secure_server: Any, users: dict[str, TestUser]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secure_server.url, timeout=30) as client:
        token = login(client, users["auditor"], workstation="ws-audit-desk")["access_token"]
        client.headers.update(bearer(token))
        yield client


@contextmanager
def offline(ws: Workstation) -> Iterator[None]:
    url = ws.server_url
    ws.server_url, ws._api = f"http://127.0.0.1:{free_port()}", None
    try:
        yield
    finally:
        ws.server_url, ws._api = url, None


def offline_reads(auditor: httpx.Client, patient_id: str) -> list[dict[str, Any]]:
    response = auditor.get(
        "/fhir/R4/AuditEvent", params={"patient": patient_id, "action": "read", "_count": 100}
    )
    assert response.status_code == 200, response.text
    events = [e["resource"] for e in response.json().get("entry", [])]
    return [e for e in events if OFFLINE_SUBTYPE in e["subtype"]]


def test_offline_reads_reach_the_audit_trail_once(
    ws: Workstation, charts: Any, auditor: httpx.Client
) -> None:
    first, second = charts.patient_ids[0], charts.patient_ids[1]
    with offline(ws):
        before = datetime.now(UTC)
        ws.load_chart(first)
        ws.load_chart(second)
        ws.load_chart(first)
        after = datetime.now(UTC)
    assert offline_reads(auditor, first) == []

    ws.sync()

    events = offline_reads(auditor, first)
    assert len(events) == 2
    for event in events:
        assert event["agent"][0]["who"]["display"] == "dr.reader"
        assert event["agent"][0]["altId"] == ws.workstation_id
        assert {"what": {"reference": f"Patient/{first}"}} in event["entity"]
        # The original time of the read, not the time of the sync.
        when = datetime.fromisoformat(event["period"]["start"])
        assert before <= when <= after
        assert datetime.fromisoformat(event["recorded"]) == when
    assert len(offline_reads(auditor, second)) == 1
    assert access_log.count(ws._db().connection()) == 0
    ws.sync()  # a repeated sync sends nothing again
    assert len(offline_reads(auditor, first)) == 2


def test_offline_reads_are_links_of_the_verified_chain(secure_server: Any, ws: Workstation) -> None:
    assert audit_rows(secure_server, username="dr.reader", action="read")  # the test above
    identity = secure_server.app.state.identity
    seal_now(secure_server.engine, identity.keys)
    with secure_server.engine.connect() as conn:
        report = verify_chain(conn, identity.audit_mac_key)
    assert report.ok, report.problem
    with secure_server.engine.connect() as conn:
        unlinked = conn.execute(
            text("SELECT count(*) FROM audit_events e WHERE e.detail->>'offline' = 'true'"
                 " AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_pos = e.pos)")
        ).scalar()  # fmt: skip
    assert unlinked == 0


def test_a_sync_cut_off_after_the_server_stored_the_reads_does_not_repeat_them(
    secure_server: Any, ws: Workstation, charts: Any, auditor: httpx.Client
) -> None:
    patient_id = charts.patient_ids[2]
    ws.load_chart(patient_id)
    # The server stores the batch; the answer never reaches the workstation.
    api, db = ws._authed_api(), ws._db()

    def lost_answer(fn: Any) -> Any:
        fn()
        raise httpx.ReadError("connection reset")

    with pytest.raises(httpx.ReadError):
        send_access_log(
            db, api, lost_answer, workstation_id=ws.workstation_id, username="dr.reader"
        )
    assert access_log.count(db.connection()) == 1
    assert len(offline_reads(auditor, patient_id)) == 1

    ws.sync()  # sends the same record again
    assert access_log.count(db.connection()) == 0
    assert len(offline_reads(auditor, patient_id)) == 1
    assert (
        send_access_log(db, api, direct, workstation_id=ws.workstation_id, username="dr.reader")
        == 0
    )


def _batch(ws: Workstation, username: str, patient_id: str, **overrides: Any) -> bytes:
    at = datetime.now(UTC)
    record = AccessRecord(
        record_id=record_id(ws.workstation_id, 10_000, at), username=username,
        patient_id=patient_id, action="read", at=at,
    )  # fmt: skip
    batch = AccessLogBatch(workstation_id=ws.workstation_id, records=[record])
    return orjson.dumps(batch.model_dump(mode="json") | overrides)


def test_reads_cannot_be_filed_for_another_user_or_workstation(
    secure_server: Any, ws: Workstation, charts: Any
) -> None:
    patient_id = charts.patient_ids[0]
    api = ws._authed_api()
    before = len(audit_rows(secure_server, action="read"))
    for body in (
        _batch(ws, "dr.other", patient_id),
        _batch(ws, "dr.reader", patient_id, workstation_id="someone-elses-workstation"),
    ):
        response = api._client.post(
            "/sync/access-log", content=body,
            headers={"Content-Type": "application/json", **api._bearer()},
        )  # fmt: skip
        assert response.status_code == 403
        assert response.json()["resourceType"] == "OperationOutcome"
    bad = orjson.loads(_batch(ws, "dr.reader", patient_id))
    bad["records"][0]["patient_id"] = "not a valid id!"
    response = api._client.post("/sync/access-log", json=bad, headers=api._bearer())
    assert response.status_code in (400, 422)
    assert response.json()["resourceType"] == "OperationOutcome"
    assert len(audit_rows(secure_server, action="read")) == before


def test_a_read_stamped_in_the_future_is_filed_at_the_server_time(
    ws: Workstation, charts: Any, auditor: httpx.Client
) -> None:
    patient_id = charts.patient_ids[1]
    ahead = datetime.now(UTC) + timedelta(days=2)
    body = _batch(ws, "dr.reader", patient_id)
    batch = orjson.loads(body)
    batch["records"][0]["at"] = ahead.isoformat()
    answer = ws._authed_api().sync_access_log(orjson.dumps(batch))
    assert answer["stored"] == 1
    [event] = [
        e for e in offline_reads(auditor, patient_id)
        if e["period"]["start"] == ahead.isoformat()
    ]  # fmt: skip
    assert datetime.fromisoformat(event["recorded"]) < ahead
