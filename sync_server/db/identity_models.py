"""Identity, tokens, SMART apps, break-the-glass grants and the audit trail tables.

Defined on the shared `Base`; created by migration `0002_identity_audit`, which also
makes `audit_events` append-only for the application's database role (`ehr_app`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Sequence,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from sync_server.db.models import Base, Xid8

AUDIT_EVENT_POS = Sequence("audit_events_pos_seq")


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    username: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    #: FHIR Location ids the user works at.
    location_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    #: Id of the linked FHIR Practitioner.
    practitioner_id: Mapped[str | None] = mapped_column(Text)
    #: TOTP secret, AES-GCM encrypted under a key kept outside the database.
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Last accepted TOTP time step: a code of this step or earlier is a replay.
    totp_last_step: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    failed_attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    failed_window_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class WorkstationRow(Base):
    """A desktop install; a revoked one is told to wipe its local cache."""

    __tablename__ = "workstations"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class RefreshTokenRow(Base):
    """One refresh token (stored as its SHA-256); rotation keeps the `family_id`."""

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    family_id: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    workstation_id: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(Text)
    #: Space-separated SMART scopes (None for first-party sessions).
    scopes: Mapped[str | None] = mapped_column(Text)
    launch_patient: Mapped[str | None] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_refresh_tokens_family", "family_id"),)


class SigningKeyRow(Base):
    """A JWT signing key. `active` signs new tokens; unretired keys still verify."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(Text, primary_key=True)
    algorithm: Mapped[str] = mapped_column(Text, nullable=False)
    #: Private JWK (JSON), AES-GCM encrypted under a key kept outside the database.
    private_jwk_enc: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SmartClientRow(Base):
    """A registered SMART app (public client: PKCE instead of a secret)."""

    __tablename__ = "smart_clients"

    client_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)
    redirect_uris: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    #: Space-separated scopes the app may ask for.
    allowed_scopes: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class AuthorizationCodeRow(Base):
    __tablename__ = "authorization_codes"

    code_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    client_id: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    redirect_uri: Mapped[str] = mapped_column(Text, nullable=False)
    scopes: Mapped[str] = mapped_column(Text, nullable=False)
    code_challenge: Mapped[str] = mapped_column(Text, nullable=False)
    launch_patient: Mapped[str | None] = mapped_column(Text)
    #: Refresh-token family issued from this code: revoked if the code is replayed.
    family_id: Mapped[str] = mapped_column(Text, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class BreakGlassGrantRow(Base):
    __tablename__ = "break_glass_grants"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text, nullable=False)
    username: Mapped[str] = mapped_column(Text, nullable=False)
    patient_id: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    workstation_id: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("ix_break_glass_user", "user_id", "expires_at"),)


class AuditEventRow(Base):
    """One audited action, inserted in the same transaction as the action. Append-only.

    `pos` comes from a sequence and `txid` is the writing transaction: the chain
    sealer links rows in commit order once every older transaction has finished
    (`sync_server.services.audit_chain`).
    """

    __tablename__ = "audit_events"

    pos: Mapped[int] = mapped_column(
        BigInteger, AUDIT_EVENT_POS, primary_key=True, server_default=AUDIT_EVENT_POS.next_value()
    )
    txid: Mapped[str] = mapped_column(
        Xid8(), nullable=False, server_default=text("pg_current_xact_id()")
    )
    id: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    recorded: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    username: Mapped[str] = mapped_column(Text, nullable=False)
    user_id: Mapped[str | None] = mapped_column(Text)
    roles: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    workstation_id: Mapped[str | None] = mapped_column(Text)
    source_ip: Mapped[str | None] = mapped_column(Text)
    client_id: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text, nullable=False)
    outcome: Mapped[str] = mapped_column(Text, nullable=False)
    resource_type: Mapped[str | None] = mapped_column(Text)
    resource_id: Mapped[str | None] = mapped_column(Text)
    patient_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)

    __table_args__ = (
        Index("ix_audit_events_txid", "txid"),
        Index("ix_audit_events_recorded", "recorded"),
        Index("ix_audit_events_username", "username", "recorded"),
        Index("ix_audit_events_patients", "patient_ids", postgresql_using="gin"),
    )


class AuditChainRow(Base):
    """The hash chain over `audit_events`, in commit order. Append-only.

    `hash` = SHA-256 over `prev_hash`, the event's `pos` and its canonical content,
    so a changed, deleted or reordered event breaks its link and every later one.
    """

    __tablename__ = "audit_chain"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_pos: Mapped[int] = mapped_column(BigInteger, unique=True, nullable=False)
    prev_hash: Mapped[str] = mapped_column(Text, nullable=False)
    hash: Mapped[str] = mapped_column(Text, nullable=False)


class AuditChainHeadRow(Base):
    """The chain's head (count and latest hash), HMAC-signed with a key outside the database.

    Deleting the newest audit rows leaves a consistent chain behind; the head
    still names the longer chain, and it cannot be rewritten without the key.
    `horizon`: every transaction below it had finished at the last seal.
    """

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    hash: Mapped[str] = mapped_column(Text, nullable=False)
    mac: Mapped[str] = mapped_column(Text, nullable=False)
    horizon: Mapped[str] = mapped_column(Xid8(), nullable=False)
