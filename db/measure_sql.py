"""SQL pieces the cohort measures share on SQLite and PostgreSQL: days between dates, the month
of a date, a JSON field matched to declared values, the latest of an episode's values."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Integer, String, and_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from carepath.engine.measures import EventMatch, FieldMatch


class DayDiff(FunctionElement[int]):
    """``later - earlier`` in whole days."""

    type = Integer()
    inherit_cache = True


@compiles(DayDiff, "sqlite")
def _day_diff_sqlite(element: DayDiff, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"


@compiles(DayDiff, "postgresql")
def _day_diff_postgresql(element: DayDiff, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST({later} AS DATE) - CAST({earlier} AS DATE))"


class MonthOf(FunctionElement[str]):
    """``YYYY-MM`` of a date."""

    type = String()
    inherit_cache = True


@compiles(MonthOf, "sqlite")
def _month_sqlite(element: MonthOf, compiler: Any, **kw: Any) -> str:
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)})"


@compiles(MonthOf, "postgresql")
def _month_postgresql(element: MonthOf, compiler: Any, **kw: Any) -> str:
    return f"to_char({compiler.process(element.clauses, **kw)}, 'YYYY-MM')"


def json_path(col: Any, field: str, kind: type) -> ColumnElement[Any]:
    path = tuple(field.split("."))
    element = col[path] if len(path) > 1 else col[path[0]]
    if kind is Boolean:
        return element.as_boolean()
    if kind is Integer:
        return element.as_integer()
    return element.as_string()


def value_kind(match: FieldMatch) -> type:
    first = match.values[0]
    return Boolean if isinstance(first, bool) else Integer if isinstance(first, int) else String


def holds(value: ColumnElement[Any], match: FieldMatch) -> ColumnElement[bool]:
    """True or false, never NULL (an absent field is no match: NOT of a NULL would drop rows)."""
    return and_(value.is_not(None), value.in_(match.values))


def matches(col: Any, match: FieldMatch) -> ColumnElement[bool]:
    return holds(json_path(col, match.field, value_kind(match)), match)


def event_where(events: Any, match: EventMatch, day: Any) -> list[ColumnElement[bool]]:
    """The events ``match`` names (types, field value) on a day (``day``: days since day 0) in its range."""
    where = [events.c.type.in_(match.types)]
    if match.where is not None:
        where.append(matches(events.c.payload, match.where))
    low, high = match.days
    where += [day >= low] if low is not None else []
    where += [day <= high] if high is not None else []
    return where


class LatestValue(FunctionElement[int]):
    """The ``value`` of the greatest (day, seq, at) in a group (PostgreSQL): one hash aggregate
    over the episodes' rows instead of sorting them all for a window (the array's elements
    compare in order; a NULL ``at`` is the enrollment's one row, told apart by ``seq``)."""

    type = Integer()
    inherit_cache = True


@compiles(LatestValue, "postgresql")
def _latest_value_postgresql(element: LatestValue, compiler: Any, **kw: Any) -> str:
    day, seq, at, value = (compiler.process(c, **kw) for c in element.clauses)
    key = f"ARRAY[CAST({day} AS float8), CAST({seq} AS float8), EXTRACT(EPOCH FROM {at}), CAST({value} AS float8)]"
    return f"CAST((max({key}))[4] AS INTEGER)"
