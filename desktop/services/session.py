"""Who is signed in, and the keys: online and offline sign-in, idle lock, wipe.

The database key lives in memory only while a user is signed in and the
session is not locked; `lock()` closes every connection and forgets it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from desktop.store import clock_guard, token_store
from desktop.store.database import ChartDatabase
from desktop.store.errors import (
    DatabaseDamaged,
    DeviceSecretMissing,
    KeyslotDamaged,
    NoOfflineSignIn,
    SessionLocked,
    WorkstationWiped,
)
from desktop.store.key_files import KeyFiles, UnlockedKeys
from desktop.store.keyslots import KdfParams, SlotClaims
from desktop.store.profile import ProfileInfo, ProfileLayout, quarantine
from desktop.store.wipe import wipe_profile
from desktop.sync.server_api import Policy, ServerApi, TokenPair, UserInfo
from shared_models.errors import AuthenticationFailed, Forbidden

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignInResult:
    user: UserInfo
    #: True when the server checked the password (and code) just now.
    online: bool
    policy: Policy
    #: Until when this user may still sign in offline on this workstation.
    offline_until: datetime
    #: Plain words about a repair made during sign-in (damaged files set aside), or None.
    notice: str | None = None


@dataclass(frozen=True)
class OfflineSignInStatus:
    possible: bool
    #: Plain words for the sign-in screen when not possible ("" when possible).
    reason: str
    valid_until: datetime | None


def _user_of(claims: SlotClaims) -> UserInfo:
    return UserInfo(claims.username, claims.roles, claims.locations, claims.practitioner)


def _policy_of(claims: SlotClaims) -> Policy:
    return Policy(claims.offline_signin_days, claims.idle_lock_minutes, wipe=False)


class Session:
    """The signed-in user of one open profile and the unlocked database."""

    def __init__(self, layout: ProfileLayout, info: ProfileInfo, kdf: KdfParams) -> None:
        self.layout = layout
        self.info = info
        self.keys = KeyFiles(layout, info, kdf)
        self.claims: SlotClaims | None = None
        self.db: ChartDatabase | None = None
        self._profile_key: bytes | None = None
        self._last_activity = time.monotonic()

    # -- sign-in ------------------------------------------------------------------

    def sign_in_online(self, api: ServerApi, user: str, password: str, otp: str) -> SignInResult:
        try:
            login = api.login(user, password, otp, self.info.workstation_id)
        except Forbidden as exc:
            raise AuthenticationFailed(
                exc.detail,
                user_message="This account cannot sign in right now (locked or disabled). "
                "Call IT support.",
            ) from None
        if login.policy.wipe:
            self.wipe(login.user.username)
            raise WorkstationWiped("server asked for a wipe at sign-in")
        self.end()
        token_store.save(
            self.info.profile_id,
            login.user.username,
            login.tokens.access_token,
            login.tokens.refresh_token,
        )
        claims = SlotClaims(
            username=login.user.username,
            profile_id=self.info.profile_id,
            last_online_signin=datetime.now(UTC).isoformat(),
            offline_signin_days=login.policy.offline_signin_days,
            idle_lock_minutes=login.policy.idle_lock_minutes,
            roles=login.user.roles,
            locations=login.user.locations,
            practitioner=login.user.practitioner,
        )
        unlocked = self.keys.unlock_after_online_sign_in(password, claims)
        notice = self._start(unlocked)
        with self.require_db().transaction() as conn:
            clock_guard.reset(conn, datetime.now(UTC))
        return SignInResult(
            login.user, True, login.policy, claims.offline_until, notice or unlocked.notice
        )

    def sign_in_offline(self, user: str, password: str) -> SignInResult:
        # Checked before the (slow) password hash, then again on the authenticated claims.
        self._check_window(self.keys.peek_claims(user))
        unlocked = self.keys.unlock_offline(user, password)
        self._check_window(unlocked.claims)
        self.end()
        notice = self._start(unlocked)
        try:
            self._check_clock(unlocked.claims)
        except NoOfflineSignIn:
            self.end()
            raise
        claims = unlocked.claims
        return SignInResult(
            _user_of(claims), False, _policy_of(claims), claims.offline_until, notice
        )

    def offline_status(self, user: str) -> OfflineSignInStatus:
        try:
            claims = self.keys.peek_claims(user)
        except (NoOfflineSignIn, DeviceSecretMissing, KeyslotDamaged) as exc:
            return OfflineSignInStatus(False, exc.user_message, None)
        try:
            self._check_window(claims)
        except NoOfflineSignIn as exc:
            return OfflineSignInStatus(False, exc.user_message, claims.offline_until)
        return OfflineSignInStatus(True, "", claims.offline_until)

    @staticmethod
    def _check_window(claims: SlotClaims, now: datetime | None = None) -> None:
        until = claims.offline_until
        if until < (now or datetime.now(UTC)):
            raise NoOfflineSignIn(
                "offline window expired",
                user_message=f"Offline sign-in on this workstation ended on {until:%d %b %Y}. "
                "Sign in online (with your code) to continue.",
            )

    def _check_clock(self, claims: SlotClaims) -> None:
        """Refuse an offline sign-in when the clock was set back; else remember the time.

        The window is checked against the later of the clock and the latest time
        this database has seen, so setting the clock back cannot stretch it.
        """
        now = datetime.now(UTC)
        with self.require_db().transaction() as conn:
            seen = clock_guard.set_back(conn, now)
            if seen is not None:
                raise NoOfflineSignIn(
                    "workstation clock set back",
                    user_message="This workstation's clock is earlier than the last time it was "
                    f"used ({seen:%d %b %Y %H:%M} UTC). Offline sign-in stays off until the "
                    "clock is corrected: call IT support, or sign in online.",
                )
            self._check_window(claims, max(now, clock_guard.high_water(conn) or now))
            clock_guard.observe(conn, now)

    def _start(self, unlocked: UnlockedKeys) -> str | None:
        """Open the database under the unlocked key; a damaged file is set aside."""
        notice = None
        try:
            self.db = self._open(unlocked)
        except DatabaseDamaged:
            log.warning("chart database did not open; setting it aside")
            quarantine(self.layout, self.layout.db_files(), "database-damaged")
            self.db = ChartDatabase(self.layout.db_path, unlocked.db_key)
            notice = DatabaseDamaged.user_message
        self.claims = unlocked.claims
        self._profile_key = unlocked.profile_key
        self.touch()
        return notice

    def _open(self, unlocked: UnlockedKeys) -> ChartDatabase:
        try:
            return ChartDatabase(self.layout.db_path, unlocked.db_key)
        except DatabaseDamaged:
            if unlocked.pending_db_key is None:
                raise
        # An interrupted rekey: the file is already under the next key.
        db = ChartDatabase(self.layout.db_path, unlocked.pending_db_key)
        self.keys.finish_rotation()
        return db

    # -- lock ------------------------------------------------------------------------

    @property
    def is_locked(self) -> bool:
        return self.db is None

    @property
    def username(self) -> str | None:
        return self.claims.username if self.claims else None

    def require_db(self) -> ChartDatabase:
        if self.db is None:
            raise SessionLocked("no unlocked session")
        return self.db

    def touch(self) -> None:
        self._last_activity = time.monotonic()

    def idle_seconds(self) -> float:
        return time.monotonic() - self._last_activity

    def lock(self) -> None:
        if self.db is not None:
            try:
                with self.db.transaction() as conn:
                    clock_guard.observe(conn, datetime.now(UTC))
            finally:  # the key is dropped even if the note of the time could not be written
                self.db.close()
            self.db = None
        self._profile_key = None

    def unlock(self, password: str) -> None:
        if self.claims is None:
            raise SessionLocked("nobody signed in", user_message="Sign in first.")
        if self.db is not None:
            return
        unlocked = self.keys.unlock_offline(self.claims.username, password)
        self._start(unlocked)
        try:
            self._check_clock(unlocked.claims)
        except NoOfflineSignIn:
            self.lock()
            raise

    def end(self) -> None:
        """Sign out: lock and forget the user."""
        self.lock()
        self.claims = None

    # -- keys ------------------------------------------------------------------------

    def rekey(self) -> None:
        """Rotate the database key: next key written first, then `PRAGMA rekey`, then promoted."""
        db = self.require_db()
        if self._profile_key is None:
            raise SessionLocked("no profile key")
        new_key = self.keys.begin_rotation(self._profile_key)
        db.rekey(new_key)
        self.keys.finish_rotation()

    def save_tokens(self, pair: TokenPair) -> None:
        if self.username:
            token_store.save(
                self.info.profile_id, self.username, pair.access_token, pair.refresh_token
            )

    def load_tokens(self) -> TokenPair | None:
        if not self.username:
            return None
        stored = token_store.load(self.info.profile_id, self.username)
        return TokenPair(stored[0], stored[1], 0) if stored else None

    def wipe(self, username: str | None = None) -> None:
        """Destroy the database and every key of the profile (remote wipe)."""
        self.lock()
        who = username or self.username
        if who:
            token_store.delete(self.info.profile_id, who)
        self.claims = None
        wipe_profile(self.layout, self.info.profile_id)
        log.warning("profile wiped on the server's instruction")
