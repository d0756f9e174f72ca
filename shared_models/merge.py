"""Three-way merge of FHIR JSON resources: base, current (server) and client.

Elements changed on one side only take that side's value; an element changed on
both sides to different values is a conflict, reported by its element path.
Lists merge by identity, never by position (DESIGN.md, sync protocol):
`identifier` and `telecom` items by `system|value`, `coding` items by
`system|code`, every other list item by its whole content. Items that share an
identity are told apart by their occurrence number, so a list is merged as a
multiset and a duplicate is never silently collapsed.

Conflict paths are FHIRPath-like (`Patient.telecom[1].use`) and index into the
current version's list (the client's when the item is not on the server), so a
path never carries a value: it can go to a log without leaking PHI.

`meta.versionId` and `meta.lastUpdated` belong to the server and are left out of
the merge; the caller stamps the merged resource.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

JSON = Any
#: Which side's value a conflicting element keeps in `MergeResult.merged`.
ConflictSide = Literal["current", "client"]

_MISSING: Final = object()
_SERVER_META: Final = ("versionId", "lastUpdated")
#: Elements whose list items are matched by these keys (DESIGN.md).
_IDENTITY_KEYS: Final[dict[str, tuple[str, str]]] = {
    "identifier": ("system", "value"),
    "telecom": ("system", "value"),
    "coding": ("system", "code"),
}


@dataclass(frozen=True)
class MergeResult:
    """The merged resource and the paths of elements both sides changed differently.

    `merged` always holds a complete resource: at a conflicting element it keeps
    the value of the side chosen with `on_conflict` (the current one by default),
    so a conflict never half-applies either edit.
    """

    merged: dict[str, JSON]
    conflicts: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not self.conflicts


def canonical(value: JSON) -> bytes:
    """Stable bytes for a JSON value (sorted keys): equality and hashing by content."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def list_item_identity(element: str, item: JSON) -> Hashable:
    """What makes a list item 'the same item' on both sides, for list `element`."""
    keys = _IDENTITY_KEYS.get(element)
    if keys is not None and isinstance(item, dict):
        first, second = item.get(keys[0]), item.get(keys[1])
        if isinstance(first, str | None) and isinstance(second, str) and second:
            return (element, first or "", second)
    return ("content", canonical(item))


def strip_server_meta(resource: dict[str, JSON]) -> dict[str, JSON]:
    """A copy of `resource` without the server-managed `meta` elements."""
    meta = resource.get("meta")
    if not isinstance(meta, dict) or not any(k in meta for k in _SERVER_META):
        return resource
    out = dict(resource)
    rest = {k: v for k, v in meta.items() if k not in _SERVER_META}
    if rest:
        out["meta"] = rest
    else:
        del out["meta"]
    return out


def merge_resources(
    base: dict[str, JSON],
    current: dict[str, JSON],
    client: dict[str, JSON],
    *,
    on_conflict: ConflictSide = "current",
) -> MergeResult:
    """Three-way merge of `client` and `current`, both edited from `base`."""
    root = str(current.get("resourceType") or client.get("resourceType") or "Resource")
    merger = _Merger(on_conflict)
    merged = merger.value(
        root,
        "",
        strip_server_meta(base),
        strip_server_meta(current),
        strip_server_meta(client),
    )
    if not isinstance(merged, dict):  # only when the sides disagree on being an object
        merged = dict(current if on_conflict == "current" else client)
    return MergeResult(merged=merged, conflicts=tuple(merger.conflicts))


class _Merger:
    def __init__(self, on_conflict: ConflictSide) -> None:
        self.on_conflict = on_conflict
        self.conflicts: list[str] = []

    def _conflict(self, path: str, current: JSON, client: JSON) -> JSON:
        self.conflicts.append(path)
        return current if self.on_conflict == "current" else client

    def value(self, path: str, element: str, base: JSON, current: JSON, client: JSON) -> JSON:
        """Merge one element; `_MISSING` stands for an absent element."""
        if _same(client, base):
            return current
        if _same(current, base) or _same(current, client):
            return client
        if isinstance(current, dict) and isinstance(client, dict):
            return self._object(path, base if isinstance(base, dict) else {}, current, client)
        if _list_or_missing(current) and _list_or_missing(client):
            # A removed list is an empty one: its items merge one by one.
            return self._list(path, element, _as_list(base), _as_list(current), _as_list(client))
        return self._conflict(path, current, client)

    def _object(
        self, path: str, base: dict[str, JSON], current: dict[str, JSON], client: dict[str, JSON]
    ) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        keys = list(current) + [k for k in client if k not in current]
        keys += [k for k in base if k not in current and k not in client]
        for key in keys:
            merged = self.value(
                f"{path}.{key}",
                key,
                base.get(key, _MISSING),
                current.get(key, _MISSING),
                client.get(key, _MISSING),
            )
            if merged is not _MISSING:
                out[key] = merged
        return out

    def _list(
        self, path: str, element: str, base: list[JSON], current: list[JSON], client: list[JSON]
    ) -> JSON:
        base_items = _keyed(element, base)
        current_items = _keyed(element, current)
        client_items = _keyed(element, client)
        current_index = {key: i for i, key in enumerate(current_items)}
        client_index = {key: i for i, key in enumerate(client_items)}
        order = list(current_items) + [k for k in client_items if k not in current_items]
        order += [k for k in base_items if k not in current_items and k not in client_items]
        out: list[JSON] = []
        for key in order:
            index = current_index.get(key, client_index.get(key, 0))
            merged = self.value(
                f"{path}[{index}]",
                element,
                base_items.get(key, _MISSING),
                current_items.get(key, _MISSING),
                client_items.get(key, _MISSING),
            )
            if merged is not _MISSING:
                out.append(merged)
        return out if out else _MISSING


def _keyed(element: str, items: list[JSON]) -> dict[Hashable, JSON]:
    """List items keyed by (identity, occurrence number), in list order."""
    seen: dict[Hashable, int] = {}
    out: dict[Hashable, JSON] = {}
    for item in items:
        identity = list_item_identity(element, item)
        occurrence = seen.get(identity, 0)
        seen[identity] = occurrence + 1
        out[(identity, occurrence)] = item
    return out


def _list_or_missing(value: JSON) -> bool:
    return isinstance(value, list) or value is _MISSING


def _as_list(value: JSON) -> list[JSON]:
    return value if isinstance(value, list) else []


def _same(a: JSON, b: JSON) -> bool:
    if a is _MISSING or b is _MISSING:
        return a is b
    return a is b or canonical(a) == canonical(b)
