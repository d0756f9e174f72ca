"""`Workstation`: the application facade the GUI and the headless commands share.

One instance per open profile. Every method may block (disk, crypto, network):
the GUI calls it from its serial store executor, never from the GUI thread.
Methods raise `shared_models.errors.ClinicError` subclasses whose
`user_message` a clinician can read; the technical detail stays in `detail`.

Lifecycle: `Workstation.open(profile_dir, server_url)` -> `sign_in_online` or
`sign_in_offline` -> work -> `lock()`/`unlock(password)` -> `close()`.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson

from desktop.services import chart_loader, patient_search
from desktop.services.break_glass import BreakGlassGrant, open_chart_outside_locations
from desktop.services.chart import ChartView
from desktop.services.conflict_review import Outcome, resolve
from desktop.services.schedule_view import ScheduleEntry, schedule_for_day
from desktop.services.scheduling import SchedulingDesk
from desktop.services.session import OfflineSignInStatus, Session, SignInResult
from desktop.services.worklist import WorkItem, build_worklist
from desktop.store import access_log, conflicts, outbox, resources, sync_state
from desktop.store.conflict_decisions import Decision
from desktop.store.conflicts import ConflictRecord
from desktop.store.database import ChartDatabase
from desktop.store.errors import WorkstationWiped
from desktop.store.keyslots import KdfParams
from desktop.store.outbox import OutboxEntry
from desktop.store.profile import ProfileLayout, ProfileLock, ensure_profile
from desktop.store.resources import PatientSummary
from desktop.sync.conflict_sync import DecisionRefused, apply_decision, direct
from desktop.sync.engine import run_sync
from desktop.sync.progress import read_status as read_sync_status
from desktop.sync.server_api import Policy, ServerApi, UserInfo
from shared_models.errors import ClinicError, NetworkUnavailable, NotFound, StoreError
from shared_models.fhir_validation import validate_resource

__all__ = [
    "Changes",
    "ChartView",
    "ConflictRecord",
    "OfflineSignInStatus",
    "OutboxEntry",
    "PatientSummary",
    "Policy",
    "SignInResult",
    "UserInfo",
    "Workstation",
    "WorkstationStatus",
]


@dataclass(frozen=True)
class Changes:
    """What a write changed, so each view can decide whether to refresh."""

    resource_type: str
    resource_id: str
    patient_id: str | None
    #: Areas touched: any of "patients", "problems", "medications", "allergies",
    #: "vitals", "notes", "appointments", "pending", "conflicts".
    kinds: frozenset[str]
    #: Outbox change id of the queued change.
    change_id: str


@dataclass(frozen=True)
class WorkstationStatus:
    #: True/False after the last attempt to reach the server; None if never tried.
    online: bool | None
    server_url: str | None
    user: str | None
    locked: bool
    last_sync: datetime | None
    pending: int
    conflicts: int
    workstation_id: str


#: Which chart areas a write of each resource type touches.
_KINDS = {
    "Patient": "patients",
    "Condition": "problems",
    "MedicationRequest": "medications",
    "MedicationStatement": "medications",
    "AllergyIntolerance": "allergies",
    "Observation": "vitals",
    "DocumentReference": "notes",
    "Composition": "notes",
    "Appointment": "appointments",
}


class Workstation:
    """Facade over the profile, the encrypted store, the session and the server."""

    def __init__(
        self,
        layout: ProfileLayout,
        lock: ProfileLock,
        session: Session,
        server_url: str | None,
    ) -> None:
        self._layout = layout
        self._lock = lock
        self._session = session
        self.server_url = server_url
        self._api: ServerApi | None = None
        self._online: bool | None = None
        self._closed = False

    @classmethod
    def open(
        cls,
        profile_dir: Path | str,
        server_url: str | None = None,
        *,
        kdf: KdfParams | None = None,
    ) -> Workstation:
        """Open (creating if new) the profile in `profile_dir`.

        Takes the profile lock: a second process opening the same profile gets
        `ProfileInUse`. The database stays closed until a sign-in. `kdf` tunes
        the password hashing cost (tests use a cheaper one).
        """
        layout = ProfileLayout(Path(profile_dir))
        layout.root.mkdir(parents=True, exist_ok=True)
        lock = ProfileLock(layout)
        lock.acquire()
        try:
            info = ensure_profile(layout)
        except BaseException:
            lock.release()
            raise
        return cls(layout, lock, Session(layout, info, kdf or KdfParams()), server_url)

    @property
    def workstation_id(self) -> str:
        return self._session.info.workstation_id

    @property
    def profile_dir(self) -> Path:
        return self._layout.root

    # -- sign-in and session -------------------------------------------------

    def sign_in_online(self, user: str, password: str, otp: str) -> SignInResult:
        """Sign in against the server (password + TOTP code).

        The first sign-in of the profile creates the database key; the first
        sign-in of a user on this workstation creates their keyslot; a password
        changed on the server replaces the keyslot. If the server says `wipe`,
        the database and keyslots are destroyed and `WorkstationWiped` is raised.
        """
        api = self._server()
        try:
            result = self._session.sign_in_online(api, user, password, otp)
        except NetworkUnavailable:
            self._online = False
            raise
        self._online = True
        return result

    def sign_in_offline(self, user: str, password: str) -> SignInResult:
        """Unlock with the local keyslot, within the policy's offline window."""
        result = self._session.sign_in_offline(user, password)
        tokens = self._session.load_tokens()
        if tokens is not None and self.server_url:
            self._server().tokens = tokens
        return result

    def offline_sign_in_status(self, user: str) -> OfflineSignInStatus:
        """Whether `user` could sign in offline now, and in plain words why not."""
        return self._session.offline_status(user)

    def lock(self) -> None:
        """Drop the database key and connection; `unlock(password)` is needed."""
        self._session.lock()

    def unlock(self, password: str) -> None:
        """Unlock a locked session for the same user (offline check of the password)."""
        self._session.unlock(password)

    @property
    def is_locked(self) -> bool:
        """True when no user is signed in or the session is locked."""
        return self._session.is_locked

    @property
    def user(self) -> str | None:
        return self._session.username

    def touch(self) -> None:
        """Record user activity (keeps the idle lock away)."""
        self._session.touch()

    def lock_if_idle(self) -> bool:
        """Lock when the policy's idle time has passed since `touch`; True if locked now.

        The GUI calls this from a timer; the facade itself starts no thread.
        """
        claims = self._session.claims
        if self.is_locked or claims is None:
            return False
        if self._session.idle_seconds() < claims.idle_lock_minutes * 60:
            return False
        self.lock()
        return True

    def refresh_policy(self) -> Policy:
        """Ask the server for the current policy; wipes the profile if it says so."""
        policy = self._authed_api().policy(self.workstation_id)
        if policy.wipe:
            self._session.wipe()
            raise WorkstationWiped("server asked for a wipe")
        return policy

    # -- charts --------------------------------------------------------------

    def _db(self) -> ChartDatabase:
        return self._session.require_db()

    def search_patients(self, text: str, limit: int = 50) -> list[PatientSummary]:
        """Patients by name prefix ("smi jo"), MRN, or birth date (YYYY-MM-DD)."""
        return patient_search.search_patients(self._db().connection(), text, limit)

    def load_chart(self, patient_id: str, *, vitals: bool = True) -> ChartView:
        """The chart view model of one patient from the local cache.

        `vitals=False` skips the vital-sign readings (`ChartView.vitals` is empty;
        `latest_vitals` is there): what the summary needs, at a fraction of the cost.
        The read is logged locally and reaches the server's audit trail at the next sync.
        """
        db = self._db()
        view = chart_loader.load_chart(db.connection(), patient_id, vitals=vitals)
        with db.transaction() as conn:
            access_log.record(conn, self._session.username or "", patient_id, "read")
        return view

    def get_resource(
        self, resource_type: str, resource_id: str
    ) -> tuple[dict[str, Any], int | None]:
        """The current local JSON of a resource and the server version it is based on."""
        stored = resources.get(self._db().connection(), resource_type, resource_id)
        if stored is None:
            raise NotFound(f"{resource_type} not cached")
        return stored.parsed(), stored.version_id

    def save_resource(self, resource: dict[str, Any], base_version: int | None) -> Changes:
        """Validate and save a resource locally with its outbox row (one transaction).

        `base_version` is the server version the edit was made on (None for a
        new resource). A resource without `id` gets a new UUID. Raises
        `ValidationFailed` naming the bad elements; nothing is written then.
        """
        db = self._db()
        resource = dict(resource)
        resource.setdefault("id", str(uuid.uuid4()))
        rtype = validate_resource(resource)
        raw = orjson.dumps(resource)
        with db.transaction() as conn:
            patient_id = resources.put(conn, resource, raw, version_id=base_version, dirty=True)
            change_id = outbox.enqueue(
                conn,
                resource_type=rtype,
                resource_id=resource["id"],
                op="upsert",
                base_version=base_version,
                patient_id=patient_id,
                raw_json=raw,
            )
        kinds = {"pending"} | ({_KINDS[rtype]} if rtype in _KINDS else set())
        return Changes(rtype, resource["id"], patient_id, frozenset(kinds), change_id)

    def list_pending_changes(self) -> list[OutboxEntry]:
        """Local changes not yet accepted by the server, oldest first."""
        return outbox.pending(self._db().connection())

    def list_conflicts(self) -> list[ConflictRecord]:
        """Open conflicts and refused changes waiting for a person."""
        return conflicts.open_conflicts(self._db().connection())

    def todays_schedule(
        self, day: date | None = None, location_ids: Collection[str] | None = None
    ) -> list[ScheduleEntry]:
        """Appointments of a local day (today by default) at these locations (None: all)."""
        return schedule_for_day(self._db().connection(), day or date.today(), location_ids)

    @property
    def scheduling(self) -> SchedulingDesk:
        """Day/week views, booking, reschedule, cancel, check-in (`desktop.services.scheduling`)."""
        return SchedulingDesk(self._db, self.save_resource)

    def worklist(self) -> list[WorkItem]:
        """Open conflicts, refused changes and unsigned drafts, for the worklist."""
        return build_worklist(self._db().connection())

    def break_glass(self, patient_id: str, reason: str) -> BreakGlassGrant:
        """Open a patient outside my locations (audited with `reason`) and cache the chart."""
        return open_chart_outside_locations(self._authed_api(), self._db(), patient_id, reason)

    def resolve_conflict(
        self, conflict_id: str, choice: str, merged: dict[str, Any] | None = None
    ) -> Outcome:
        """Keep "theirs", "mine" or a "merged" version of a conflict (see conflict_review).

        Returns "resolved", or "queued" when the server could not be reached: the
        decision is stored and goes to the server at the next sync. Raises
        `DecisionRefused` when the server refuses it (the conflict stays open).
        """
        record = next((c for c in self.list_conflicts() if c.conflict_id == conflict_id), None)
        if record is None:
            raise NotFound(f"conflict {conflict_id} not open")
        return resolve(
            self._db(), record, choice, merged, save=self.save_resource, send=self._send_decision
        )

    def _send_decision(self, decision: Decision) -> bool:
        """Settle a stored decision with the server now; False when it has to wait."""
        try:
            api = self._authed_api()
            apply_decision(self._db(), api, direct, decision)
        except DecisionRefused:
            raise
        except NetworkUnavailable:
            self._online = False
            return False
        except ClinicError:  # no server session, or a passing failure: the next sync sends it
            return False
        self._online = True
        return True

    # -- sync and status -----------------------------------------------------

    def status(self) -> WorkstationStatus:
        """Online?, last sync, pending changes and open conflicts (no network call)."""
        pending = open_conflicts = 0
        last = None
        online = self._online
        if not self.is_locked:
            conn = self._db().connection()
            pending, open_conflicts = outbox.count(conn), conflicts.count_open(conn)
            last = sync_state.last_sync(conn)
            if online is None:  # this process has not tried yet: the last stored attempt
                online = read_sync_status(conn).online
        return WorkstationStatus(
            online=online,
            server_url=self.server_url,
            user=self._session.username,
            locked=self.is_locked,
            last_sync=last,
            pending=pending,
            conflicts=open_conflicts,
            workstation_id=self.workstation_id,
        )

    def sync(self, progress: Any = None) -> Any:
        """Push the outbox and pull changes (delegates to `desktop.sync.engine`).

        Checks the server's policy first: a revoked workstation or user is wiped.
        `progress` (a `desktop.sync.progress.SyncProgress`) is updated as it runs.
        """
        db = self._db()
        api = self._authed_api()
        try:
            self.refresh_policy()
            report = run_sync(
                db, api, workstation_id=self.workstation_id, progress=progress,
                username=self._session.username,
            )  # fmt: skip
        except NetworkUnavailable:
            self._online = False
            raise
        self._online = True
        with db.transaction() as conn:
            sync_state.set_last_sync(conn, datetime.now(UTC))
        return report

    def rekey(self) -> None:
        """Rotate the database key (`PRAGMA rekey`); every keyslot keeps working."""
        self._session.rekey()

    def close(self) -> None:
        """Lock, close the store and release the profile lock. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._session.end()
        if self._api is not None:
            self._api.close()
        self._lock.release()

    def __enter__(self) -> Workstation:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- server ----------------------------------------------------------------

    def _server(self) -> ServerApi:
        if not self.server_url:
            raise NetworkUnavailable(
                "no server configured",
                user_message="No server is configured for this workstation. Call IT support.",
            )
        if self._api is None:
            self._api = ServerApi(self.server_url)
            self._api.on_tokens = self._session.save_tokens
        return self._api

    def _authed_api(self) -> ServerApi:
        api = self._server()
        if api.tokens is None:
            api.tokens = self._session.load_tokens()
        if api.tokens is None:
            raise StoreError(
                "no server session",
                user_message="Sign in online (with your code) to synchronise.",
            )
        return api
