"""FHIR search in three steps: parse the request, build SQL, fetch a page (+ includes).

SQL text is assembled only from fixed fragments (table and column names from
this module); every value from the request is a bound parameter.

Parsing turns query items into a typed `SearchQuery` (unknown parameters are an
error under `Prefer: handling=strict`, else ignored and reported). SQL asks
for `count + 1` rows so the caller knows whether a next page exists. Every
query is filtered by the caller's visible locations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from psycopg import Connection

from shared_models.errors import ValidationFailed
from sync_server.services.search_params import (
    COMMON_PARAMS,
    SearchParam,
    date_range,
    normalize_string,
    params_for,
    parse_reference,
)

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
#: Parameters that shape the result rather than filter it.
RESULT_PARAMS = frozenset(
    {"_count", "_offset", "_sort", "_include", "_total", "_summary", "_format"}
)


@dataclass(frozen=True)
class Criterion:
    name: str
    kind: str
    modifier: str | None
    #: Alternatives (comma-separated in the request): any may match.
    values: tuple[str, ...]
    param: SearchParam | None = None
    #: Chained search (`schedule.actor=...`): (reference parameter, its target type).
    chain: tuple[str, str] | None = None


@dataclass
class SearchQuery:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    count: int = 50
    offset: int = 0
    sort: list[tuple[str, bool]] = field(default_factory=list)
    #: (parameter, target type or None) of `_include=Type:param[:Target]`.
    includes: list[tuple[str, str | None]] = field(default_factory=list)
    want_total: bool = False
    #: Parameters ignored under lenient handling, reported back to the client.
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FoundRow:
    resource_type: str
    id: str
    json: bytes
    patient_id: str | None


@dataclass
class SearchResult:
    query: SearchQuery
    matches: list[FoundRow]
    included: list[FoundRow]
    has_next: bool
    total: int | None


def _bad(message: str, expression: str) -> ValidationFailed:
    return ValidationFailed(message, issues=[(expression, message)])


def parse_search(
    resource_type: str,
    items: Sequence[tuple[str, str]],
    *,
    default_count: int,
    max_count: int,
    strict: bool,
) -> SearchQuery:
    """Typed search from query items; raises ValidationFailed naming the bad parameter."""
    query = SearchQuery(resource_type, count=default_count)
    known = params_for(resource_type)
    for raw_name, raw_value in items:
        name, _, modifier = raw_name.partition(":")
        if name in RESULT_PARAMS:
            _apply_result_param(query, name, raw_value, max_count, known)
            continue
        if name in COMMON_PARAMS:
            query.criteria.append(
                Criterion(name, COMMON_PARAMS[name], modifier or None, _split(raw_value))
            )
            continue
        if "." in name:
            query.criteria.append(_chained(name, raw_value, known))
            continue
        param = known.get(name)
        if param is None:
            if strict:
                raise _bad(f"Unknown search parameter {name} for {resource_type}", raw_name)
            query.ignored.append(raw_name)
            continue
        if (
            modifier
            and modifier not in _MODIFIERS[param.kind]
            and not (param.kind == "reference" and modifier[:1].isupper())
        ):
            raise _bad(f"Modifier :{modifier} is not supported for {name}", raw_name)
        query.criteria.append(
            Criterion(name, param.kind, modifier or None, _split(raw_value), param)
        )
    return query


def _chained(name: str, value: str, known: dict[str, SearchParam]) -> Criterion:
    """`schedule.actor=X`: the resource's `schedule` points at a Schedule matching `actor=X`."""
    head, _, tail = name.partition(".")
    ref = known.get(head)
    if ref is None or ref.kind != "reference" or len(ref.targets) != 1:
        raise _bad(f"Cannot chain through {head}", name)
    param = params_for(ref.targets[0]).get(tail)
    if param is None:
        raise _bad(f"Unknown search parameter {tail} for {ref.targets[0]}", name)
    return Criterion(tail, param.kind, None, _split(value), param, (head, ref.targets[0]))


_MODIFIERS: dict[str, frozenset[str]] = {
    "token": frozenset({"not"}),
    "string": frozenset({"exact", "contains"}),
    "date": frozenset(),
    "reference": frozenset(),
    "quantity": frozenset(),
}


def _split(value: str) -> tuple[str, ...]:
    parts = [p.replace("\\,", ",") for p in value.replace("\\,", "\x00").split(",")]
    return tuple(p.replace("\x00", ",") for p in parts if p != "")


def _apply_result_param(
    query: SearchQuery, name: str, value: str, max_count: int, known: dict[str, SearchParam]
) -> None:
    if name in ("_count", "_offset"):
        try:
            number = int(value)
        except ValueError:
            raise _bad(f"{name} must be a whole number", name) from None
        if number < 0:
            raise _bad(f"{name} must not be negative", name)
        if name == "_count":
            query.count = min(number, max_count)
            query.want_total = query.want_total or number == 0
        else:
            query.offset = number
    elif name == "_sort":
        for key in _split(value):
            desc = key.startswith("-")
            key = key.lstrip("-")
            if key not in ("_id", "_lastUpdated") and (
                key not in known or known[key].kind not in ("date", "string", "token")
            ):
                raise _bad(f"Cannot sort by {key}", "_sort")
            query.sort.append((key, desc))
    elif name == "_include":
        source, _, rest = value.partition(":")
        param_name, _, target = rest.partition(":")
        if source != query.resource_type or known.get(param_name) is None:
            raise _bad(f"Unsupported _include {value}", "_include")
        if known[param_name].kind != "reference":
            raise _bad(f"_include needs a reference parameter: {value}", "_include")
        query.includes.append((param_name, target or None))
    elif name == "_total":
        query.want_total = value == "accurate"
    elif name == "_summary" and value == "count":
        query.want_total = True
        query.count = 0


# --- SQL --------------------------------------------------------------------------------


class _Sql:
    """Accumulates a WHERE clause and its parameters (psycopg %(name)s placeholders)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._n = 0

    def bind(self, value: Any) -> str:
        self._n += 1
        key = f"p{self._n}"
        self.params[key] = value
        return f"%({key})s"


def _date_condition(sql: _Sql, prefixed: str, low_col: str, high_col: str, expr: str) -> str:
    prefix = prefixed[:2] if prefixed[:2] in DATE_PREFIXES else "eq"
    value = prefixed[2:] if prefixed[:2] in DATE_PREFIXES else prefixed
    try:
        low, high = date_range(value)
    except ValueError:
        raise _bad(f"Invalid date {value!r}", expr) from None
    lo, hi = sql.bind(low), sql.bind(high)
    return {
        "eq": f"({low_col} >= {lo} AND {high_col} <= {hi})",
        "ne": f"NOT ({low_col} >= {lo} AND {high_col} <= {hi})",
        "gt": f"{high_col} > {hi}",
        "lt": f"{low_col} < {lo}",
        "ge": f"{high_col} > {lo}",
        "le": f"{low_col} < {hi}",
        "sa": f"{low_col} >= {hi}",
        "eb": f"{high_col} <= {lo}",
    }[prefix]


def _number_condition(sql: _Sql, prefixed: str, column: str, expr: str) -> str:
    prefix = prefixed[:2] if prefixed[:2] in DATE_PREFIXES else "eq"
    text = prefixed[2:] if prefixed[:2] in DATE_PREFIXES else prefixed
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise _bad(f"Invalid number {text!r}", expr) from None
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb((exponent if isinstance(exponent, int) else 0) - 1)
    v, lo, hi = sql.bind(number), sql.bind(number - half), sql.bind(number + half)
    return {
        "eq": f"({column} >= {lo} AND {column} < {hi})",
        "ne": f"NOT ({column} >= {lo} AND {column} < {hi})",
        "gt": f"{column} > {v}",
        "lt": f"{column} < {v}",
        "ge": f"{column} >= {v}",
        "le": f"{column} <= {v}",
        "sa": f"{column} > {v}",
        "eb": f"{column} < {v}",
    }[prefix]


def _value_condition(sql: _Sql, c: Criterion, value: str) -> str:
    expr = c.name
    if c.kind == "token":
        system, bar, code = value.rpartition("|")
        parts = [f"i.code = {sql.bind(code)}"] if code else []
        if bar and system:
            parts.append(f"i.system = {sql.bind(system)}")
        elif bar:
            parts.append("i.system IS NULL")
        return "(" + " AND ".join(parts or ["TRUE"]) + ")"
    if c.kind == "string":
        norm = normalize_string(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        if c.modifier == "exact":
            return f"i.value = {sql.bind(normalize_string(value))}"
        pattern = f"%{norm}%" if c.modifier == "contains" else f"{norm}%"
        return f"i.value LIKE {sql.bind(pattern)}"
    if c.kind == "date":
        return _date_condition(sql, value, "i.low", "i.high", expr)
    if c.kind == "reference":
        parsed = parse_reference(value)
        if parsed is None:
            raise _bad(f"Invalid reference {value!r}", expr)
        target_type, target_id = parsed
        if target_type is None and c.modifier:
            target_type = c.modifier
        cond = f"i.target_id = {sql.bind(target_id)}"
        if target_type:
            cond += f" AND i.target_type = {sql.bind(target_type)}"
        return f"({cond})"
    number, _, unit = value.partition("|")
    cond = _number_condition(sql, number, "i.value", expr)
    if unit:
        system, bar, code = unit.rpartition("|")
        if code:
            cond += f" AND i.code = {sql.bind(code)}"
        if bar and system:
            cond += f" AND i.system = {sql.bind(system)}"
    return f"({cond})"


_TABLES = {
    "token": "search_token",
    "string": "search_string",
    "date": "search_date",
    "reference": "search_reference",
    "quantity": "search_quantity",
}


def _criterion_sql(sql: _Sql, c: Criterion) -> str:
    if c.name == "_id":
        return f"r.id = ANY({sql.bind(list(c.values))})"
    if c.name == "_lastUpdated":
        ranges = [
            _date_condition(sql, v, "r.last_updated", "r.last_updated", c.name) for v in c.values
        ]
        return "(" + " OR ".join(ranges) + ")"
    ors = " OR ".join(_value_condition(sql, c, v) for v in c.values) or "FALSE"
    if c.chain is not None:
        head, target = c.chain
        return (
            f"EXISTS (SELECT 1 FROM search_reference ch JOIN {_TABLES[c.kind]} i"  # noqa: S608
            " ON i.resource_type = ch.target_type AND i.resource_id = ch.target_id"
            " WHERE ch.resource_type = r.resource_type AND ch.resource_id = r.id"
            f" AND ch.param = {sql.bind(head)} AND ch.target_type = {sql.bind(target)}"
            f" AND i.param = {sql.bind(c.name)} AND ({ors}))"
        )
    exists = (
        f"EXISTS (SELECT 1 FROM {_TABLES[c.kind]} i WHERE i.resource_type = r.resource_type"  # noqa: S608
        f" AND i.resource_id = r.id AND i.param = {sql.bind(c.name)} AND ({ors}))"
    )
    return f"NOT {exists}" if c.modifier == "not" else exists


def visibility_sql(sql: _Sql, visible: frozenset[str] | None, break_glass: Sequence[str]) -> str:
    """Rows of patients cared for at `visible` locations (or break-glass), and non-patient rows."""
    if visible is None:
        return "TRUE"
    return (
        "(r.patient_id IS NULL"  # noqa: S608
        f" OR r.patient_id = ANY({sql.bind(list(break_glass))})"
        " OR EXISTS (SELECT 1 FROM patient_locations pl WHERE pl.patient_id = r.patient_id"
        f" AND pl.location_id = ANY({sql.bind(sorted(visible))})))"
    )


def _order_sql(sql: _Sql, query: SearchQuery) -> str:
    keys = []
    for name, desc in query.sort:
        direction = "DESC NULLS LAST" if desc else "ASC NULLS LAST"
        if name == "_id":
            keys.append(f"r.id {'DESC' if desc else 'ASC'}")
        elif name == "_lastUpdated":
            keys.append(f"r.last_updated {direction}")
        else:
            kind = params_for(query.resource_type)[name].kind
            table, column = _TABLES[kind], {"date": "low", "string": "value", "token": "code"}[kind]
            agg = "max" if desc else "min"
            keys.append(
                f"(SELECT {agg}(i.{column}) FROM {table} i WHERE i.resource_type = r.resource_type"  # noqa: S608
                f" AND i.resource_id = r.id AND i.param = {sql.bind(name)}) {direction}"
            )
    keys.append("r.id")
    return ", ".join(keys)


def run_search(
    conn: Connection[Any],
    query: SearchQuery,
    visible: frozenset[str] | None,
    break_glass: Sequence[str] = (),
) -> SearchResult:
    """Fetch one page of matches (and their includes) for `query`."""
    sql = _Sql()
    where = [f"r.resource_type = {sql.bind(query.resource_type)}", "NOT r.deleted"]
    where += [_criterion_sql(sql, c) for c in query.criteria]
    where.append(visibility_sql(sql, visible, break_glass))
    where_sql = " AND ".join(where)
    matches: list[FoundRow] = []
    has_next = False
    if query.count > 0:
        statement = (
            f"SELECT r.id, r.resource::text, r.patient_id FROM resources r WHERE {where_sql}"  # noqa: S608
            f" ORDER BY {_order_sql(sql, query)}"
            f" LIMIT {sql.bind(query.count + 1)} OFFSET {sql.bind(query.offset)}"
        )
        rows = conn.execute(statement, sql.params).fetchall()
        has_next = len(rows) > query.count
        matches = [
            FoundRow(query.resource_type, rid, text.encode(), pid)
            for rid, text, pid in rows[: query.count]
        ]
    total: int | None = None
    if query.want_total:
        total = conn.execute(
            f"SELECT count(*) FROM resources r WHERE {where_sql}",  # noqa: S608
            sql.params,
        ).fetchone()[0]  # type: ignore[index]
    elif query.offset == 0 and not has_next and query.count > 0:
        total = len(matches)
    included = _includes(conn, query, matches, visible, break_glass)
    return SearchResult(query, matches, included, has_next, total)


def _includes(
    conn: Connection[Any],
    query: SearchQuery,
    matches: list[FoundRow],
    visible: frozenset[str] | None,
    break_glass: Sequence[str],
) -> list[FoundRow]:
    if not query.includes or not matches:
        return []
    ids = [m.id for m in matches]
    seen = {(m.resource_type, m.id) for m in matches}
    found: list[FoundRow] = []
    for param, target in query.includes:
        sql = _Sql()
        cond = f"i.target_type = {sql.bind(target)}" if target else "i.target_type IS NOT NULL"
        statement = (
            "SELECT r.resource_type, r.id, r.resource::text, r.patient_id FROM resources r"  # noqa: S608
            " WHERE NOT r.deleted AND (r.resource_type, r.id) IN ("
            " SELECT i.target_type, i.target_id FROM search_reference i"
            f" WHERE i.resource_type = {sql.bind(query.resource_type)}"
            f" AND i.resource_id = ANY({sql.bind(ids)}) AND i.param = {sql.bind(param)}"
            f" AND {cond})"
            f" AND {visibility_sql(sql, visible, break_glass)}"
        )
        for rtype, rid, text, pid in conn.execute(statement, sql.params):
            if (rtype, rid) not in seen:
                seen.add((rtype, rid))
                found.append(FoundRow(rtype, rid, text.encode(), pid))
    return found
