"""Three-way merge of FHIR JSON: hypothesis properties and the contract's list rules."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Hashable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared_models.merge import canonical, list_item_identity, merge_resources
from shared_models.risk import top_level_element

KEYS = ["identifier", "telecom", "coding", "name", "status", "birthDate", "note", "extension"]
scalars = st.one_of(st.sampled_from(["a", "b", "c", "x"]), st.integers(0, 3), st.booleans())
generic = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["u", "v", "w"]), inner)
    ),
    max_leaves=6,
)


def identity_items(second: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    item = st.fixed_dictionaries(
        {"system": st.sampled_from(["s1", "s2"]), second: st.sampled_from(["1", "2", "3"])},
        optional={"use": st.sampled_from(["home", "work"]), "rank": st.integers(1, 2)},
    )
    return st.lists(item, max_size=4)


def element_value(key: str) -> st.SearchStrategy[Any]:
    if key in ("identifier", "telecom"):
        return identity_items("value")
    if key == "coding":
        return identity_items("code")
    return generic


@st.composite
def resources(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=6))
    out: dict[str, Any] = {"resourceType": "Patient", "id": "p1"}
    for key in keys:
        out[key] = draw(element_value(key))
    return out


def mutate(draw: st.DrawFn, key: str, value: Any) -> Any:
    """A random edit of `value`: replaced, or changed inside (items added, dropped, edited)."""
    how = draw(st.sampled_from(["replace", "inside", "inside"]))
    if how == "replace" or not isinstance(value, list | dict):
        return draw(element_value(key))
    if isinstance(value, dict):
        out = dict(value)
        for k in list(out):
            if draw(st.integers(0, 3)) == 0:
                del out[k]
            elif draw(st.integers(0, 2)) == 0:
                out[k] = mutate(draw, k, out[k])
        return out
    items = [v for v in value if draw(st.integers(0, 3)) > 0]
    items = [mutate(draw, key, v) if draw(st.integers(0, 3)) == 0 else v for v in items]
    new = draw(element_value(key))
    items += new[:2] if isinstance(new, list) else [new]
    return draw(st.permutations(items)) if items else items


@st.composite
def edited(draw: st.DrawFn, base: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    out = dict(base)
    for key in keys:
        if key in out and draw(st.integers(0, 4)) == 0:
            del out[key]
        else:
            out[key] = mutate(draw, key, out[key]) if key in out else draw(element_value(key))
    return out


@st.composite
def three_versions(draw: st.DrawFn, disjoint: bool) -> tuple[dict[str, Any], ...]:
    base = draw(resources())
    server_keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=3))
    pool = [k for k in KEYS if k not in server_keys] if disjoint else KEYS
    client_keys = draw(st.lists(st.sampled_from(pool), unique=True, max_size=3))
    return base, draw(edited(base, server_keys)), draw(edited(base, client_keys))


def flatten(value: Any, path: tuple[Hashable, ...] = ()) -> Counter[tuple[Hashable, ...]]:
    """Leaves as (path..., value), counted; list items addressed by identity, not position."""
    out: Counter[tuple[Hashable, ...]] = Counter()  # an empty object or list holds nothing
    if isinstance(value, dict):
        for k, v in value.items():
            out += flatten(v, (*path, k))
    elif isinstance(value, list):
        element = next(p for p in reversed(path) if isinstance(p, str))
        for item in value:
            out += flatten(item, (*path, list_item_identity(element, item)))
    else:
        out[(*path, canonical(value))] += 1
    return out


def unordered(value: Any) -> Any:
    """A comparable form in which list order does not count."""
    if isinstance(value, dict):
        return {k: unordered(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted(json.dumps(unordered(v), sort_keys=True) for v in value)
    return value


@settings(max_examples=100, deadline=None)
@given(three_versions(disjoint=False))
def test_no_concurrent_change_gives_the_other_side(versions: tuple[dict[str, Any], ...]) -> None:
    base, server, client = versions
    result = merge_resources(base, base, client)
    assert result.clean and result.merged == client
    result = merge_resources(base, server, base)
    assert result.clean and result.merged == server


@settings(max_examples=100, deadline=None)
@given(three_versions(disjoint=True))
def test_disjoint_edits_merge_cleanly_and_symmetrically(
    versions: tuple[dict[str, Any], ...],
) -> None:
    base, server, client = versions
    one = merge_resources(base, server, client)
    other = merge_resources(base, client, server)
    assert one.clean and other.clean
    assert unordered(one.merged) == unordered(other.merged)
    expected = {k: v for k, v in base.items() if k in server and k in client}
    for side in (server, client):
        for key in set(side) | set(base):
            if side.get(key, KeyError) != base.get(key, KeyError):
                if key in side:
                    expected[key] = side[key]
                else:
                    expected.pop(key, None)
    assert unordered(one.merged) == unordered(expected)


@settings(max_examples=100, deadline=None)
@given(three_versions(disjoint=False))
def test_nothing_lost_every_edit_merged_or_reported(versions: tuple[dict[str, Any], ...]) -> None:
    base, server, client = versions
    result = merge_resources(base, server, client)
    conflicted = {top_level_element(p) for p in result.conflicts}
    merged, original = flatten(result.merged), flatten(base)
    for side, other in ((flatten(client), flatten(server)), (flatten(server), flatten(client))):
        for leaf in set(side) | set(original):
            if leaf[0] in conflicted:
                continue
            was, now, elsewhere = original[leaf], side[leaf], other[leaf]
            if now > was:  # added on this side: kept unless the other side removed it
                assert merged[leaf] >= now - max(0, was - elsewhere), leaf
            if now < was:  # removed on this side: gone unless the other side added it
                assert merged[leaf] <= now + max(0, elsewhere - was), leaf


def test_identifier_lists_merge_by_system_and_value_not_position() -> None:
    base = {
        "resourceType": "Patient",
        "identifier": [{"system": "mrn", "value": "1"}, {"system": "ssn", "value": "2"}],
    }
    server = {
        "resourceType": "Patient",
        "identifier": [{"system": "dl", "value": "9"}, *base["identifier"]],
    }
    client = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "mrn", "value": "1"},
            {"system": "ssn", "value": "2", "use": "old"},
        ],
    }
    result = merge_resources(base, server, client)
    assert result.clean
    assert result.merged["identifier"] == [
        {"system": "dl", "value": "9"},
        {"system": "mrn", "value": "1"},
        {"system": "ssn", "value": "2", "use": "old"},
    ]


def test_same_telecom_changed_two_ways_is_a_conflict_at_its_path() -> None:
    phone = {"system": "phone", "value": "555-0100"}
    base = {"resourceType": "Patient", "telecom": [{"system": "email", "value": "a@b"}, phone]}
    server = {"resourceType": "Patient", "telecom": [base["telecom"][0], {**phone, "use": "home"}]}
    client = {"resourceType": "Patient", "telecom": [{**phone, "use": "work"}]}
    result = merge_resources(base, server, client)
    assert result.conflicts == ("Patient.telecom[1].use",)
    # The client's removal of the e-mail still merges; the clash keeps the server's value.
    assert result.merged["telecom"] == [{**phone, "use": "home"}]
    assert "555" not in "".join(result.conflicts)  # paths carry no values (no PHI)
    preferred = merge_resources(base, server, client, on_conflict="client")
    assert preferred.merged["telecom"] == [{**phone, "use": "work"}]


def test_coding_merges_by_system_and_code() -> None:
    concept = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}
    base = {"resourceType": "Observation", "code": concept}
    server = {
        "resourceType": "Observation",
        "code": {"coding": [*concept["coding"], {"system": "local", "code": "HR"}]},
    }
    client = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "HR"}]},
    }
    result = merge_resources(base, server, client)
    assert result.clean
    assert result.merged["code"]["coding"] == [
        {"system": "http://loinc.org", "code": "8867-4", "display": "HR"},
        {"system": "local", "code": "HR"},
    ]


def test_server_meta_is_left_to_the_server() -> None:
    base = {"resourceType": "Patient", "meta": {"versionId": "1"}, "gender": "male"}
    server = {"resourceType": "Patient", "meta": {"versionId": "2", "lastUpdated": "x"}}
    client = {
        "resourceType": "Patient",
        "meta": {"versionId": "1"},
        "gender": "male",
        "active": True,
    }
    result = merge_resources(base, server, client)
    assert result.clean
    assert result.merged == {"resourceType": "Patient", "active": True}
