"""Helpers shared by list endpoints: sort-parameter parsing and counted, paginated queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVarTuple

from fastapi import Query
from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import QueryableAttribute, Session

from semon.api.problems import invalid_parameter


def sort_pattern(keys: Iterable[str]) -> str:
    """Regex of valid ``sort`` values, for the OpenAPI schema (clients and fuzzers see what is allowed)."""
    key = "-?(?:" + "|".join(sorted(keys, key=len, reverse=True)) + ")"
    return f"^{key}(?:,{key})*$"


def sort_query(keys: Iterable[str], examples: list[str]) -> Any:
    """The ``sort`` query parameter's metadata: the keys in its description and its pattern in the schema."""
    keys = list(keys)
    return Query(
        description=f"comma-separated keys, '-' for descending: {', '.join(keys)}",
        pattern=sort_pattern(keys),
        examples=examples,
    )


_Ts = TypeVarTuple("_Ts")  # a statement's columns

# What ORDER BY takes: a column expression, or a mapped attribute (``Alarm.start_ts``).
Sortable = ColumnElement[Any] | QueryableAttribute[Any]


def parse_sort(
    sort: str, columns: Mapping[str, Sortable], tiebreak: Sortable
) -> list[Sortable]:
    """ORDER BY clauses for ``"-start_ts,severity"`` (``-`` = descending) over ``columns``.

    ``tiebreak`` (a unique column) is appended so pages never overlap or skip rows when sort
    values repeat.
    """
    order: list[Sortable] = []
    for raw in sort.split(","):
        key = raw.strip()
        if not key:
            continue
        desc = key.startswith("-")
        name = key.lstrip("+-")
        col = columns.get(name)
        if col is None:
            allowed = ", ".join(sorted(columns))
            raise invalid_parameter("sort", f"cannot sort by {name!r}; use one of: {allowed}")
        # PostgreSQL's default NULL placement (largest value), spelled out so SQLite agrees.
        order.append(col.desc().nulls_first() if desc else col.asc().nulls_last())
    order.append(tiebreak)
    return order


def count_rows(session: Session, stmt: Select[*_Ts]) -> int:
    """Rows ``stmt`` would return without LIMIT/OFFSET."""
    counted = select(func.count()).select_from(stmt.order_by(None).subquery())
    return session.execute(counted).scalar_one()


def page(
    session: Session,
    stmt: Select[*_Ts],
    order: Sequence[Sortable],
    limit: int,
    offset: int,
) -> tuple[int, list[Any]]:
    """``(total, rows)`` of one page of ``stmt``."""
    rows = list(session.execute(stmt.order_by(*order).limit(limit).offset(offset)).all())
    # A short, non-empty page (or an empty first page) is the end: its total is known without
    # a second COUNT query over the whole filter.
    if len(rows) < limit and (rows or offset == 0):
        return offset + len(rows), rows
    return count_rows(session, stmt), rows
