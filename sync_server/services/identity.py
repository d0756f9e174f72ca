"""The identity services one server process shares: settings, keys, guard, audit sink."""

from __future__ import annotations

from dataclasses import dataclass

from sync_server.config import Settings
from sync_server.services.access_guard import ScopedAccessGuard
from sync_server.services.audit import ChainedAuditSink
from sync_server.services.audit_chain import HEAD_MAC_PURPOSE
from sync_server.services.login_policy import SecuritySettings, security_settings
from sync_server.services.server_keys import ServerKeys
from sync_server.services.tokens import SigningKeys


@dataclass(frozen=True)
class IdentityRuntime:
    security: SecuritySettings
    keys: ServerKeys
    signing: SigningKeys
    audit: ChainedAuditSink
    guard: ScopedAccessGuard

    @property
    def audit_mac_key(self) -> bytes:
        return self.keys.derive(HEAD_MAC_PURPOSE)


def build_runtime(settings: Settings, security: SecuritySettings | None = None) -> IdentityRuntime:
    security = security or security_settings()
    keys = ServerKeys.load(security.server_secret, settings.data_dir)
    return IdentityRuntime(
        security=security,
        keys=keys,
        signing=SigningKeys(keys),
        audit=ChainedAuditSink(keys),
        guard=ScopedAccessGuard(),
    )
