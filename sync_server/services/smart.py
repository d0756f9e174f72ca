"""SMART on FHIR: scope parsing and enforcement, and PKCE (S256 only). No I/O.

Scopes are SMART v2 (`patient/Observation.rs`, `user/*.cruds`) with the v1 forms
(`patient/*.read`, `user/Observation.write`) read as their v2 equivalents. A
scope never widens what the user's role allows: the guard checks both.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from shared_models.errors import ValidationFailed
from sync_server.services.permissions import ACTION_LETTERS

#: Scopes without a resource part that the server understands.
PLAIN_SCOPES: Final = frozenset(
    {"openid", "fhirUser", "profile", "launch", "launch/patient", "offline_access", "online_access"}
)
_V1_PERMISSIONS: Final = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE_RE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)$")
_PKCE_VERIFIER_RE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")

SUPPORTED_SCOPES_EXAMPLES: Final = (
    "openid",
    "fhirUser",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "user/*.cruds",
    "user/Observation.cruds",
)


@dataclass(frozen=True)
class ResourceScope:
    context: str  # patient | user | system
    resource_type: str  # a type or "*"
    letters: str  # subset of "cruds"


def parse_resource_scope(scope: str) -> ResourceScope | None:
    """The resource scope `scope` names, or None for a plain scope like `openid`."""
    match = _SCOPE_RE.match(scope)
    if match is None:
        return None
    context, resource_type, perms = match.groups()
    letters = _V1_PERMISSIONS.get(perms, perms)
    if not set(letters) <= set("cruds"):
        return None
    return ResourceScope(context, resource_type, letters)


def validate_scopes(requested: str) -> frozenset[str]:
    """Split a `scope` parameter; raise `ValidationFailed` for scopes we do not know."""
    scopes = frozenset(requested.split())
    unknown = sorted(s for s in scopes if s not in PLAIN_SCOPES and parse_resource_scope(s) is None)
    if unknown or not scopes:
        raise ValidationFailed(
            "invalid scope", issues=[("scope", "Unknown or empty scope requested")]
        )
    return scopes


def scope_allows(
    scopes: frozenset[str], action: str, resource_type: str, *, patient_bound: bool
) -> bool:
    """True when a granted resource scope covers `action` on `resource_type`.

    `patient_bound` says whether the call is confined to the launch patient: only
    then do `patient/` scopes count.
    """
    letter = ACTION_LETTERS.get(action)
    if letter is None or letter == "g":
        return False  # signing is never delegated to a third-party app
    for scope in scopes:
        parsed = parse_resource_scope(scope)
        if parsed is None or parsed.resource_type not in ("*", resource_type):
            continue
        if parsed.context == "patient" and not patient_bound:
            continue
        if letter in parsed.letters:
            return True
    return False


def only_patient_scopes(scopes: frozenset[str]) -> bool:
    """True when every resource scope is a `patient/` one (the app sees one patient)."""
    parsed = [p for p in map(parse_resource_scope, scopes) if p is not None]
    return all(p.context == "patient" for p in parsed)


def pkce_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def pkce_matches(verifier: str, challenge: str) -> bool:
    """S256 check of a code verifier against the stored challenge (RFC 7636)."""
    if not _PKCE_VERIFIER_RE.match(verifier):
        return False
    return hmac.compare_digest(pkce_challenge(verifier), challenge)


def capability_security(fhir_base: str) -> dict[str, object]:
    """The CapabilityStatement `rest.security` block: SMART on FHIR with its OAuth URIs."""
    root = fhir_base.rstrip("/").removesuffix("/fhir/R4")
    uris = {"authorize": "/auth/authorize", "token": "/auth/token", "revoke": "/auth/logout"}
    return {
        "cors": False,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ],
                "text": "OAuth2 with SMART on FHIR scopes; PKCE S256",
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": name, "valueUri": f"{root}{path}"} for name, path in uris.items()
                ],
            }
        ],
    }
