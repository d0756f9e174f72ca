"""Retry policy, keychain token reload, and the progress/status the GUI polls (no server)."""

from __future__ import annotations

import random
import threading

import pytest

from desktop.sync.progress import SyncProgress
from desktop.sync.retry import RetryPolicy, call_with_retries
from desktop.sync.server_api import ServerApi, TokenPair
from shared_models.errors import AuthenticationFailed, NetworkUnavailable, ValidationFailed


def test_backoff_is_full_jitter_under_a_growing_capped_ceiling() -> None:
    policy = RetryPolicy(attempts=8, base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (7, 4.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling and min(delays) < 0.2 * ceiling  # spread, not fixed


def test_network_failures_are_retried_then_given_up() -> None:
    waits: list[float] = []
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise NetworkUnavailable("connection refused")
        return "ok"

    policy = RetryPolicy(attempts=5, base_delay=0.01)
    assert call_with_retries(flaky, policy, sleep=waits.append) == "ok"
    assert calls == 3 and len(waits) == 2

    def down() -> str:
        raise NetworkUnavailable("connection refused")

    waits.clear()
    with pytest.raises(NetworkUnavailable):
        call_with_retries(down, policy, sleep=waits.append)
    assert len(waits) == policy.attempts - 1


def test_a_refusal_is_never_retried() -> None:
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise ValidationFailed("bad change")

    with pytest.raises(ValidationFailed):
        call_with_retries(refused, RetryPolicy(), sleep=lambda _: None)
    assert calls == 1


def test_tokens_rotated_by_another_process_are_taken_from_the_keychain() -> None:
    api = ServerApi("http://127.0.0.1:9")
    stale, fresh = TokenPair("a1", "r1", 0), TokenPair("a2", "r2", 0)
    api.tokens = stale
    try:

        def needs_fresh() -> str:
            if api.tokens != fresh:
                raise AuthenticationFailed("refresh token already used")
            return "ok"

        assert call_with_retries(needs_fresh, RetryPolicy(), api=api, reload_tokens=lambda: fresh)
        api.tokens = stale
        with pytest.raises(AuthenticationFailed):  # same tokens in the keychain: sign in again
            call_with_retries(needs_fresh, RetryPolicy(), api=api, reload_tokens=lambda: stale)
    finally:
        api.close()


def test_progress_snapshots_for_a_polling_gui() -> None:
    progress = SyncProgress()
    assert progress.latest().phase == "idle"
    progress.start_push(400)
    workers = [threading.Thread(target=progress.pushed, args=(100,)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    snap = progress.latest()
    assert (snap.phase, snap.pushed, snap.to_push, snap.fraction) == ("push", 200, 400, 0.5)
    assert snap.seconds_left is not None and snap.seconds_left >= 0
    progress.start_pull()
    progress.pulled(2000, 1_500_000)
    snap = progress.latest()
    assert (snap.pulled, snap.bytes_received, snap.fraction) == (2000, 1_500_000, None)
    assert snap.seconds_left is None  # a pull of unknown size: a busy indicator
    progress.expect_pull(8000)  # the server's estimate, from the first page
    snap = progress.latest()
    assert (snap.to_pull, snap.fraction) == (8000, 0.25)
    assert snap.seconds_left is not None and snap.seconds_left > 0
    progress.finish(ok=True)
    assert progress.latest().fraction == 1.0 and progress.latest().phase == "done"
