"""The push idempotency key's hash: the same for a change whichever way it is computed.

`push_log` stores the SHA-256 of each change as sent and compares it when the
same `change_id` comes again. It is now taken from the change's fields as
parsed (no `model_dump(mode="json")` walk through the resource), so it must
equal the hash of the model's JSON dump: a change answered by an earlier
server version is still recognised as the same change, not as an id reused
for another payload.
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import orjson

from shared_models.merge import canonical
from shared_models.sync_messages import MAX_PUSH_CHANGES, PushChange, PushRequest
from sync_server.services.push_log import as_sent, change_hash

_SAMPLE = "fhir-synthea/bulk-ndjson-10-patients"


def _changes(shared_data: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((shared_data / _SAMPLE).glob("*.000.ndjson")):
        for n, line in enumerate(path.read_text().splitlines()[:25]):
            resource = orjson.loads(line)
            out.append({
                "change_id": str(uuid.uuid4()), "resourceType": resource["resourceType"],
                "id": resource["id"], "op": "upsert", "base_version": None if n % 2 else n,
                "resource": resource,
            })  # fmt: skip
    out.append({"change_id": "gone-1", "resourceType": "Goal", "id": "g-1", "op": "delete",
                "base_version": 3})  # fmt: skip
    return out[:MAX_PUSH_CHANGES]


def test_hash_of_the_fields_equals_the_hash_of_the_json_dump(shared_data: Path) -> None:
    body = orjson.dumps({"client_id": "ws-1", "changes": _changes(shared_data)})
    request = PushRequest.model_validate(orjson.loads(body))  # as the route parses it
    assert len(request.changes) > 250  # every type of the sample
    for change in request.changes:
        dumped = change.model_dump(mode="json")
        assert as_sent(change) == dumped
        assert change_hash(change) == hashlib.sha256(canonical(dumped)).digest()


def test_another_payload_under_the_same_id_hashes_differently(shared_data: Path) -> None:
    change = PushChange.model_validate(_changes(shared_data)[0])
    edited = change.model_copy(update={"resource": {**(change.resource or {}), "status": "x"}})
    assert change_hash(change) != change_hash(edited)
    assert change_hash(change) == change_hash(PushChange.model_validate(as_sent(change)))
