"""Retries for the sync's server calls: exponential backoff with full jitter.

Only failures that may pass on their own are retried: the network being down,
a timeout, a busy server (`NetworkUnavailable`: transport errors, 5xx, 429).
Retrying is safe because every sync call is idempotent: a push by `change_id`,
a pull by the cursor the workstation has not advanced yet.

Authentication: `ServerApi` already refreshes an expired access token once
(rotation). When even that fails, another process on this workstation (the
GUI while `ehr-desktop sync` runs) may have rotated the refresh token first
and stored the new pair in the keychain: `reload_tokens` reads it, and the
call is tried once more with it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from desktop.sync.server_api import ServerApi, TokenPair
from shared_models.errors import AuthenticationFailed, NetworkUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a call is retried."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number `attempt` (1-based): full jitter."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(0.0, ceiling)


def call_with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    *,
    api: ServerApi | None = None,
    reload_tokens: Callable[[], TokenPair | None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, retried per `policy`; the last `NetworkUnavailable` is raised."""
    tried_keychain = False
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except AuthenticationFailed:
            fresh = reload_tokens() if reload_tokens is not None else None
            if tried_keychain or api is None or fresh is None or fresh == api.tokens:
                raise
            tried_keychain = True
            api.tokens = fresh
            log.info("retrying with tokens another process stored in the keychain")
        except NetworkUnavailable as exc:
            if attempt >= policy.attempts:
                raise
            wait = policy.delay(attempt)
            log.info("sync call failed (%s); retry %d in %.1f s", exc.detail, attempt, wait)
            sleep(wait)
