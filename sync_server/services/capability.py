"""The CapabilityStatement: generated from the same tables the server runs on.

Types come from `shared_models.fhir_validation.SUPPORTED_TYPES`, search
parameters and includes from `search_params.SEARCH_PARAMS`, so a client can
trust that what is listed works and what is not listed does not.
"""

from __future__ import annotations

from typing import Any

from shared_models.fhir_validation import SUPPORTED_TYPES
from sync_server.services.search_params import COMMON_PARAMS, params_for
from sync_server.services.smart import capability_security

_TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)


def _resource_entry(resource_type: str) -> dict[str, Any]:
    params = params_for(resource_type)
    search_params = [{"name": name, "type": kind} for name, kind in COMMON_PARAMS.items()]
    search_params += [{"name": p.name, "type": p.kind} for p in params.values()]
    includes = sorted(f"{resource_type}:{p.name}" for p in params.values() if p.kind == "reference")
    sortable = [p.name for p in params.values() if p.kind in ("date", "string", "token")]
    entry: dict[str, Any] = {
        "type": resource_type,
        "interaction": [{"code": code} for code in _TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": search_params,
    }
    if includes:
        entry["searchInclude"] = includes
    entry["extension"] = [
        {
            "url": "urn:ehr:capability:sort",
            "valueString": ",".join(["_id", "_lastUpdated", *sortable]),
        }
    ]
    return entry


def capability_statement(base_url: str, software_version: str) -> dict[str, Any]:
    """What this server supports, at `base_url`."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-28",
        "publisher": "Clinic network",
        "kind": "instance",
        "software": {"name": "ehr-server", "version": software_version},
        "implementation": {"description": "Clinic FHIR R4 record", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json", "json"],
        "rest": [
            {
                "mode": "server",
                "security": capability_security(base_url),
                "resource": [_resource_entry(t) for t in sorted(SUPPORTED_TYPES)],
                "interaction": [
                    {"code": "transaction"},
                    {"code": "batch"},
                    {"code": "history-system"},
                ],
                "searchParam": [
                    {"name": "_count", "type": "number"},
                    {"name": "_offset", "type": "number"},
                ],
            }
        ],
    }
