"""schemathesis against the live server's /openapi.json, signed in: no 5xx, no response
that breaks its own schema. Bounded (a few examples per operation) to stay fast."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from identity_support import (
    bearer,
    login,
    make_user,
)
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

MAX_EXAMPLES = 3


@pytest.fixture(scope="module")
def signed_in(secure_server: Any) -> dict[str, str]:
    """A user who reaches every route: clinician and admin at once."""
    user = make_user(secure_server, "fuzz.user", ["physician", "admin"], ["loc-fuzz"])
    with httpx.Client(base_url=secure_server.url) as client:
        return bearer(login(client, user)["access_token"])


def _fuzz(operation: Any, headers: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(
            headers=headers, checks=[not_a_server_error, response_schema_conformance]
        )

    run()


def test_openapi_contract(secure_server: Any, signed_in: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_url(f"{secure_server.url}/openapi.json")
    failures: list[str] = []
    tested = 0
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        if operation.path == "/auth/logout":
            continue  # would end the fuzzing session's token; it has its own tests
        tested += 1
        try:
            _fuzz(operation, signed_in)
        except Exception as exc:  # one line per failing operation, then fail once
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:300]}")
    print(f"schemathesis: {tested} operations fuzzed")
    assert tested > 20
    assert failures == []
