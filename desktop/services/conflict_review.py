"""Conflict review, headless: which fields differ, what happened in plain words, resolving.

A conflict holds three versions: the base (what was edited), mine (the
workstation's edit the server did not accept) and theirs (the server's
version). Resolving one of the server's review queue (keep theirs, keep mine,
a merged version) is the server's business: the decision is stored durably,
sent at once when the server is reachable (otherwise at the next sync), and
the conflict closes here when the server has confirmed it and its resulting
version is in the local cache (`desktop.sync.conflict_sync`). The server
writes a Provenance naming the person who decided.

Changes only this workstation knows about:

- a change the server refused: "keep theirs" discards it and restores the
  server's current copy (the same way: stored, then fetched); keep mine /
  merged saves the chosen version as a new local edit;
- a conflict the server answered without an id, or a chart that left scope:
  decided locally, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any, Literal

import orjson

from desktop.services.worklist import TYPE_WORDS
from desktop.store import conflict_decisions, conflicts, outbox, resources
from desktop.store.conflict_decisions import Decision, Resolution
from desktop.store.conflicts import ConflictRecord
from desktop.store.database import ChartDatabase
from desktop.sync.conflict_sync import FROM_ELSEWHERE
from shared_models.fhir_validation import validate_resource
from shared_models.risk import RESOLVER_ROLES, classify_conflict, may_resolve

#: Bookkeeping elements a person never needs to compare.
IGNORED_ROOTS = ("meta", "text", "id", "resourceType")
CHOICES = ("theirs", "mine", "merged")


@dataclass(frozen=True)
class FieldDiff:
    path: str
    label: str
    base: str
    mine: str
    theirs: str

    @property
    def changed_by_me(self) -> bool:
        return self.mine != self.base

    @property
    def changed_by_them(self) -> bool:
        return self.theirs != self.base


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def flatten(node: Any, prefix: str = "") -> dict[str, str]:
    """`{"dosageInstruction[0].text": "1 tablet daily", ...}` for every leaf."""
    out: dict[str, str] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            if not prefix and key in IGNORED_ROOTS:
                continue
            out |= flatten(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out |= flatten(value, f"{prefix}[{index}]")
    else:
        out[prefix] = _scalar(node)
    return out


def label_of(path: str) -> str:
    """`dosageInstruction[0].timing.repeat.frequency` -> `Dosage instruction › frequency`."""
    parts = [p.split("[")[0] for p in path.split(".")]
    words = []
    for part in (parts[0], parts[-1]) if len(parts) > 1 else (parts[0],):
        spaced = "".join(f" {c.lower()}" if c.isupper() else c for c in part).strip()
        words.append(spaced[:1].upper() + spaced[1:])
    return " › ".join(dict.fromkeys(words))


def field_diffs(
    base: dict[str, Any] | None, mine: dict[str, Any] | None, theirs: dict[str, Any] | None
) -> list[FieldDiff]:
    """Every leaf where at least one side differs from another, in document order."""
    flat = [flatten(v) if v else {} for v in (base, mine, theirs)]
    paths = list(dict.fromkeys([*flat[2], *flat[1], *flat[0]]))
    out = []
    for path in paths:
        b, m, t = (f.get(path, "") for f in flat)
        if not (b == m == t):
            out.append(FieldDiff(path, label_of(path), b, m, t))
    return out


def _parse(raw: bytes | None) -> dict[str, Any] | None:
    return orjson.loads(raw) if raw else None


@dataclass(frozen=True)
class ConflictView:
    record: ConflictRecord
    base: dict[str, Any] | None
    mine: dict[str, Any] | None
    theirs: dict[str, Any] | None
    diffs: list[FieldDiff]
    explanation: str

    @property
    def in_server_queue(self) -> bool:
        """Decided on the server (see module doc), not on this workstation only."""
        return conflicts.on_server(self.record)

    @property
    def from_elsewhere(self) -> bool:
        """The "mine" side was sent by another workstation (listed from the server's queue)."""
        return _sent_from_elsewhere(self.record)


def _sent_from_elsewhere(record: ConflictRecord) -> bool:
    return conflicts.on_server(record) and FROM_ELSEWHERE in record.reason


def _when(theirs: dict[str, Any] | None) -> str:
    stamp = (theirs or {}).get("meta", {}).get("lastUpdated")
    if not isinstance(stamp, str):
        return ""
    try:
        return (
            datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            .astimezone()
            .strftime(" at %H:%M on %d %b")
        )
    except ValueError:
        return ""


def _fields(diffs: list[FieldDiff]) -> str:
    labels = list(dict.fromkeys(d.label.lower() for d in diffs))
    if not labels:
        return "nothing"
    return ", ".join(labels[:-1]) + (" and " if len(labels) > 1 else "") + labels[-1]


def explain(record: ConflictRecord, diffs: list[FieldDiff], theirs: dict[str, Any] | None) -> str:
    what = TYPE_WORDS.get(record.resource_type, record.resource_type).lower()
    mine = [d for d in diffs if d.changed_by_me]
    them = [d for d in diffs if d.changed_by_them]
    both = [d for d in diffs if d.changed_by_me and d.changed_by_them and d.mine != d.theirs]
    elsewhere = _sent_from_elsewhere(record)
    first = (
        f"Another workstation sent a change to the {_fields(mine)} of this {what} "
        "(shown as “Mine”)."
        if elsewhere
        else f"You changed the {_fields(mine)} of this {what} on this computer."
    )
    lines = [
        first,
        f"Meanwhile someone else changed the {_fields(them)} on the server{_when(theirs)}.",
    ]
    if both:
        lines.append(
            f"Both of you changed the {_fields(both)} in different ways, so a person has to "
            "decide which is right."
        )
    if record.reason:
        lines.append(record.reason if elsewhere else f"Server: {record.reason}")
    lines.append("Nothing is lost: both versions stay in the record's history.")
    return " ".join(lines)


#: The roles that may decide a conflict, in the words the review dialog uses.
_ROLE_WORDS = {"physician": "a physician", "nurse": "a nurse", "front_desk": "front-desk staff"}


def decider_needed(record: ConflictRecord, roles: Iterable[str] | None) -> str | None:
    """Who must decide a conflict of the server's queue that these roles may not, in words.

    None when the roles may decide it (or are unknown: the server then decides),
    and for conflicts of this workstation only. The review route follows from
    the resource type alone as far as roles go (`shared_models.risk`): a
    medication or allergy conflict needs a prescriber, as on the server.
    """
    route = classify_conflict(record.resource_type, ())
    if roles is None or not conflicts.on_server(record) or may_resolve(route, roles):
        return None
    allowed = sorted(RESOLVER_ROLES[route])
    return " or ".join(_ROLE_WORDS.get(role, role) for role in allowed)


def conflict_view(record: ConflictRecord) -> ConflictView:
    base, mine, theirs = map(_parse, (record.base_json, record.local_json, record.server_json))
    diffs = field_diffs(base, mine, theirs)
    return ConflictView(record, base, mine, theirs, diffs, explain(record, diffs, theirs))


Outcome = Literal["resolved", "queued"]

#: The person's choice, as the server's resolution of a queue conflict.
_RESOLUTIONS: dict[str, Resolution] = {
    "theirs": "keep_server", "mine": "keep_mine", "merged": "merged",
}  # fmt: skip
_CHOICE_WORDS = {"theirs": "keep theirs", "mine": "keep mine", "merged": "the merged version"}


def resolve(
    db: ChartDatabase,
    record: ConflictRecord,
    choice: str,
    merged: dict[str, Any] | None = None,
    *,
    save: Callable[[dict[str, Any], int | None], object],
    send: Callable[[Decision], bool],
) -> Outcome:
    """Apply a person's decision (see module doc); "queued" when it waits for the server.

    `save` is `Workstation.save_resource`; `send` tries to settle a stored
    decision with the server now and says whether it could.
    """
    if choice not in CHOICES:
        raise ValueError(f"unknown choice {choice!r}")
    theirs, mine = _parse(record.server_json), _parse(record.local_json)
    chosen = merged if choice == "merged" else mine
    chosen = None if chosen is None else {k: v for k, v in chosen.items() if k != "meta"}
    if conflicts.on_server(record):  # "mine" without a version keeps the workstation's delete
        if choice == "merged":
            if chosen is None:
                raise ValueError("a merged version is needed")
            validate_resource(dict(chosen))
        resource = None if choice == "theirs" else chosen
        return _decide(db, record, _RESOLUTIONS[choice], resource, _CHOICE_WORDS[choice], send)
    if choice != "theirs" and chosen is None:
        raise ValueError("there is no local version to keep")
    if choice == "theirs" and record.status == "rejected":
        return _decide(db, record, "discard", None, "discard my change", send)
    if choice == "theirs":
        with db.transaction() as conn:
            if theirs is not None and record.server_json is not None:
                resources.put(
                    conn, theirs, record.server_json, version_id=record.server_version, dirty=False
                )
            if record.change_id:
                outbox.remove(conn, record.change_id)
            conflicts.mark_resolved(conn, record.conflict_id)
        return "resolved"
    assert chosen is not None
    base = record.server_version
    if base is None:  # a refused change: based on the version this workstation holds
        stored = resources.get(db.connection(), record.resource_type, record.id)
        base = stored.version_id if stored else None
    save(chosen, base)
    with db.transaction() as conn:
        conflicts.mark_resolved(conn, record.conflict_id)
    return "resolved"


def _decide(
    db: ChartDatabase,
    record: ConflictRecord,
    resolution: Resolution,
    resource: dict[str, Any] | None,
    words: str,
    send: Callable[[Decision], bool],
) -> Outcome:
    """Store the decision durably (the conflict says it waits), then try to send it."""
    with db.transaction() as conn:
        earlier = conflict_decisions.get(conn, record.conflict_id)
        reason = earlier.reason if earlier else record.reason
        decision = conflict_decisions.new(record.conflict_id, resolution, resource, reason)
        conflict_decisions.put(conn, decision)
        conflicts.set_reason(
            conn, record.conflict_id,
            f"Your decision ({words}) is saved and goes to the server at the next sync. {reason}",
        )  # fmt: skip
    return "resolved" if send(decision) else "queued"


_MISSING = object()


def _steps(path: str) -> list[str | int]:
    steps: list[str | int] = []
    for part in path.split("."):
        name, *indexes = part.split("[")
        steps.append(name)
        steps += [int(i.rstrip("]")) for i in indexes]
    return steps


def _get(node: Any, steps: list[str | int]) -> Any:
    for step in steps:
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return _MISSING
        elif not isinstance(node, dict) or step not in node:
            return _MISSING
        node = node[step]
    return node


def _set(node: Any, steps: list[str | int], value: Any) -> None:
    for step, following in pairwise(steps):
        empty: Any = [] if isinstance(following, int) else {}
        if isinstance(step, int):
            while len(node) <= step:
                node.append(empty)
            node = node[step]
        else:
            node = node.setdefault(step, empty)
    last = steps[-1]
    if isinstance(last, int):
        while len(node) <= last:
            node.append(None)
    node[last] = value


def _delete(node: Any, steps: list[str | int]) -> None:
    parent = _get(node, steps[:-1])
    if isinstance(parent, dict):
        parent.pop(steps[-1], None)
    elif isinstance(parent, list) and isinstance(steps[-1], int) and steps[-1] < len(parent):
        parent[steps[-1]] = None


def _prune(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _prune(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_prune(v) for v in node if v is not None]
    return node


def build_merged(
    theirs: dict[str, Any], mine: dict[str, Any], use_mine: set[str]
) -> dict[str, Any]:
    """The server's version with the fields in `use_mine` taken from the local edit."""
    merged: dict[str, Any] = orjson.loads(orjson.dumps(theirs))
    for path in use_mine:
        steps = _steps(path)
        value = _get(mine, steps)
        if value is _MISSING:
            _delete(merged, steps)
        else:
            _set(merged, steps, value)
    return dict(_prune(merged))
