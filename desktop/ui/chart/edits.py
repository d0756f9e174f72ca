"""Op functions for chart edits: read the current version, change it, save it.

They run on the store thread (inside an Op), so reading the base version and
saving happen back to back on the same connection; the saved change carries
the version it was made on, for the server's three-way merge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Resource = dict[str, Any]


def save_new(resource: Resource) -> Callable[[Any], Any]:
    def fn(ws: Any) -> Any:
        return ws.save_resource(resource, None)

    return fn


def save_all_new(resources: list[Resource]) -> Callable[[Any], list[Any]]:
    def fn(ws: Any) -> list[Any]:
        return [ws.save_resource(resource, None) for resource in resources]

    return fn


def change_existing(
    resource_type: str, resource_id: str, change: Callable[[Resource], Resource]
) -> Callable[[Any], Any]:
    def fn(ws: Any) -> Any:
        current, version = ws.get_resource(resource_type, resource_id)
        return ws.save_resource(change(current), version)

    return fn
