"""Cohort measures and the workload forecast as SQL aggregates over the store.

A pathway's declared measures (``carepath.engine.measures``) become one aggregate query each,
grouped by month of enrollment, over a cohort: the episodes whose day 0 lies in a period (the
live report) or a given list with each one's last observed day (``carepath simulate``). Every
day is counted from the episode's day 0; an episode's end day E is the earliest of its
observation limit and the day of the event that ends observation (withdrawal). Nothing is loaded
row by row into Python: the database counts, and the indexes of migration 0013 serve the look-ups
by code and by type.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Date,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.sql.elements import ColumnElement

from carepath.engine.measures import Condition, Counts, EventMatch, ItemMatch, MeasureSet, MeasureSpec, Met
from db.measure_facts import FACTS, event_fact, fill, filled, item_fact, value_fact
from db.measure_sql import DayDiff, LatestValue, MonthOf, event_where, holds, json_path, matches
from db.models import AuditRow, ComingItemRow, EpisodeRow, EventRow, TimelineItemRow

EPISODES = EpisodeRow.__table__
EVENTS = EventRow.__table__
ITEMS = TimelineItemRow.__table__
COMING = ComingItemRow.__table__
AUDIT = AuditRow.__table__
ALL = "all"  # the bucket of the whole cohort beside its months
DRILL_LIMIT = 500


# ---- the cohort -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The live report's cohort: episodes whose day 0 lies in [start, end], observed to ``as_of``."""

    as_of: date
    start: date | None = None
    end: date | None = None


@dataclass(frozen=True)
class Observed:
    """Given episodes, each observed to its own last day (a simulated story's ``until_day``)."""

    until: Sequence[tuple[str, date]]


REPORTED_STATUSES = ("active", "completed", "withdrawn")
# An ``Observed`` cohort's limits, in a temporary table of the report's connection (VALUES lists
# with column names are not SQLite syntax, and a compound SELECT is limited to 500 terms there).
OBSERVED = Table(
    "observed_until",
    MetaData(),
    Column("episode_id", String(64), primary_key=True),
    Column("until", Date, nullable=False),
    prefixes=["TEMPORARY"],
)


def _enrollment_fields(measures: MeasureSet) -> dict[str, type]:
    """Each enrollment field a measure reads, with its SQL type (from the values it is matched to)."""
    fields: dict[str, type] = {}
    for spec in measures.measures:
        conditions = [
            *(spec.met.any + spec.met.none if spec.met else []),
            *(spec.episodes.having if spec.episodes else []),
        ]
        for condition in conditions:
            if condition.enrollment is not None:
                first = condition.enrollment.values[0]
                fields[condition.enrollment.field] = (
                    Boolean if isinstance(first, bool) else Integer if isinstance(first, int) else String
                )
        if spec.value is not None and spec.value.enrollment_field:
            fields[spec.value.enrollment_field] = Integer
    return fields


def _column_name(field: str) -> str:
    return "enrollment_" + field.replace(".", "__")


def _cohort_table(measures: MeasureSet) -> Table:
    """The report's cohort as a temporary table: built once per report, read by every measure.
    The enrollment facts the measures read are extracted into typed columns once (a JSON document
    parsed once per episode, not once per measure)."""
    extra = [Column(_column_name(f), kind) for f, kind in _enrollment_fields(measures).items()]
    return Table(
        "measure_cohort",
        MetaData(),
        Column("episode_id", String(64), nullable=False),  # no key to build: every read hashes it
        Column("patient_ref", String(64)),
        Column("identified_on", Date),
        Column("enrolled_on", Date),
        Column("month", String(7)),
        Column("enrolled_day", Integer),
        Column("end_day", Integer),
        *extra,
        prefixes=["TEMPORARY"],
    )


def _prepare(db: Connection, measures: MeasureSet, which: Period | Observed) -> Table:
    """The report's cohort as a temporary table of this connection."""
    if db.dialect.name == "postgresql":
        # Sorts and hashes of a report over 100,000 episodes stay in memory (default 4 MB); no
        # JIT: compiling a measure's plan cost more than it saved (25-60 ms a query at 100,000).
        db.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        db.exec_driver_sql("SET LOCAL jit = off")
    cohort = _cohort_table(measures)
    for table in (OBSERVED, cohort):
        table.drop(db, checkfirst=True)
    if isinstance(which, Observed):
        OBSERVED.create(db)
        if which.until:
            db.execute(insert(OBSERVED), [{"episode_id": e, "until": u} for e, u in which.until])
    cohort.create(db)
    query = _cohort(measures, which)
    db.execute(insert(cohort).from_select([c.name for c in cohort.columns], select(*query.c)))
    if db.dialect.name == "postgresql":
        db.exec_driver_sql("ANALYZE measure_cohort")  # temporary tables get no statistics otherwise
    return cohort


def _cohort(measures: MeasureSet, which: Period | Observed) -> Any:
    """The cohort as a subquery: id, patient_ref, identified_on, enrolled_on, month, enrollment,
    enrolled_day and end_day (E)."""
    e = EPISODES
    if isinstance(which, Observed):
        source = e.join(OBSERVED, OBSERVED.c.episode_id == e.c.id)
        until: Any = OBSERVED.c.until
        where: list[Any] = []
    else:
        source, until = e, literal(which.as_of, Date)
        where = [e.c.status.in_(REPORTED_STATUSES), not_(e.c.simulated), e.c.pathway_id == measures.pathway]
        if which.start is not None:
            where.append(e.c.identified_on >= which.start)
        if which.end is not None:
            where.append(e.c.identified_on <= which.end)
    end_on: Any = until
    ends_with = measures.observation.ends_with_event
    if ends_with:
        ended = (
            select(EVENTS.c.episode_id, func.min(EVENTS.c.occurred_on).label("on"))
            .where(EVENTS.c.type == ends_with)
            .group_by(EVENTS.c.episode_id)
            .subquery("ended")
        )
        source = source.outerjoin(ended, ended.c.episode_id == e.c.id)
        end_on = case((and_(ended.c.on.is_not(None), ended.c.on < until), ended.c.on), else_=until)
    return (
        select(
            e.c.id.label("episode_id"),
            e.c.patient_ref,
            e.c.identified_on,
            e.c.enrolled_on,
            MonthOf(e.c.enrolled_on).label("month"),
            DayDiff(e.c.enrolled_on, e.c.identified_on).label("enrolled_day"),
            DayDiff(end_on, e.c.identified_on).label("end_day"),
            *(
                json_path(e.c.enrollment, field, kind).label(_column_name(field))
                for field, kind in _enrollment_fields(measures).items()
            ),
        )
        .select_from(source)
        .where(*where)
        .subquery("cohort")
    )


# ---- conditions ---------------------------------------------------------------------------------


class _Joins:
    """The first-occurrence tables a measure's conditions join (hash joins over one pass of the
    look-up index each, instead of one correlated sub-query per cohort row)."""

    def __init__(self, facts: bool) -> None:
        self.tables: list[tuple[Any, Any]] = []
        self.facts = facts  # the cohort's facts are kept (db/measure_facts.py): read them

    def kept(self, key: str | None, c: Any) -> ColumnElement[bool] | None:
        """The condition read from the kept fact ``key`` (its first day), if there is one."""
        if not self.facts or key is None:
            return None
        query = select(FACTS.c.episode_id, FACTS.c.day.label("first")).where(FACTS.c.fact == key)
        return _inside(self.first_day(query, lambda t: t.c.episode_id == c.c.episode_id).c.first, c)

    def first_day(self, query: Any, on: Any) -> Any:
        table = query.subquery(f"first{len(self.tables)}")
        self.tables.append((table, on(table)))
        return table

    def onto(self, source: Any) -> Any:
        for table, on in self.tables:
            source = source.outerjoin(table, on)
        return source


def _inside(first: Any, c: Any) -> ColumnElement[bool]:
    """It happened, on or before the end day (the first occurrence decides)."""
    return and_(first.is_not(None), first <= c.c.end_day)


def _event_condition(c: Any, match: EventMatch, item: Any | None, joins: _Joins) -> ColumnElement[bool]:
    ev = EVENTS.alias("ev")
    if match.days_after_item is not None and item is not None:
        # Relative to each population item: few items, so one probe of the index per item.
        day = DayDiff(ev.c.occurred_on, c.c.identified_on)
        low, high = match.days_after_item
        where = [ev.c.episode_id == c.c.episode_id, ev.c.type.in_(match.types), day <= c.c.end_day]
        where += [day >= item.c.day + low, day <= item.c.day + high]
        if match.where is not None:
            where.append(matches(ev.c.payload, match.where))
        return exists().where(*where)
    if (kept := joins.kept(event_fact(match), c)) is not None:
        return kept
    owner = c.alias("owner")  # the cohort: only its episodes, with their day 0
    day = DayDiff(ev.c.occurred_on, owner.c.identified_on)
    query = (
        select(ev.c.episode_id, func.min(day).label("first"))
        .select_from(ev.join(owner, owner.c.episode_id == ev.c.episode_id))
        .where(*event_where(ev, match, day))
        .group_by(ev.c.episode_id)
    )
    table = joins.first_day(query, lambda t: t.c.episode_id == c.c.episode_id)
    return _inside(table.c.first, c)


def _item_condition(c: Any, match: ItemMatch, item: Any | None, joins: _Joins) -> ColumnElement[bool]:
    if (kept := joins.kept(item_fact(match), c)) is not None:
        return kept
    found = ITEMS.alias("found")
    kinds = [found.c.code.in_(match.codes)] if match.codes else []
    kinds += [and_(found.c.kind == "phase", found.c.code.like(f"%->{p}")) for p in match.phases_entered]
    keys = [found.c.episode_id]
    if match.same_occasion and item is not None:
        keys.append(found.c.occasion)
    query = select(*keys, func.min(found.c.day).label("first")).where(or_(*kinds)).group_by(*keys)

    def on(table: Any) -> Any:
        same = [table.c.episode_id == c.c.episode_id]
        if match.same_occasion and item is not None:
            same.append(table.c.occasion == item.c.occasion)
        return and_(*same)

    return _inside(joins.first_day(query, on).c.first, c)


def _condition(c: Any, condition: Condition, item: Any | None, joins: _Joins) -> ColumnElement[bool]:
    """``condition`` for the cohort row ``c`` (and the population item ``item``), inside E."""
    if condition.enrollment is not None:
        return holds(c.c[_column_name(condition.enrollment.field)], condition.enrollment)
    if condition.event is not None:
        return _event_condition(c, condition.event, item, joins)
    assert condition.item is not None
    return _item_condition(c, condition.item, item, joins)


def _met(c: Any, met: Met, item: Any | None, joins: _Joins) -> ColumnElement[bool]:
    parts: list[ColumnElement[bool]] = []
    if met.any:
        parts.append(or_(*(_condition(c, x, item, joins) for x in met.any)))
    parts += [not_(_condition(c, x, item, joins)) for x in met.none]
    return and_(*parts)


@dataclass(frozen=True)
class _Frame:
    """One measure's rows (episodes or items) with its eligible and met expressions."""

    source: Any
    eligible: ColumnElement[bool]
    met: ColumnElement[bool]
    observed: ColumnElement[bool]  # counted as the population before the window rule
    item: Any | None


def _frame(c: Any, spec: MeasureSpec, facts: bool) -> _Frame:
    assert spec.met is not None
    joins = _Joins(facts)
    if spec.items is not None:
        population = spec.items
        item = ITEMS.alias("subject")
        on = [item.c.episode_id == c.c.episode_id, item.c.code.in_(population.codes), item.c.day <= c.c.end_day]
        if population.occasions:
            on.append(item.c.occasion.in_(population.occasions))
        met = _met(c, spec.met, item, joins)
        eligible = c.c.end_day >= item.c.day + population.observed_days
        return _Frame(joins.onto(c.join(item, and_(*on))), eligible, met, true(), item)
    episodes = spec.episodes
    assert episodes is not None
    threshold: Any = episodes.observed_days
    if episodes.from_enrollment:
        threshold = c.c.enrolled_day + episodes.observed_days
    met = _met(c, spec.met, None, joins)
    eligible: ColumnElement[bool] = c.c.end_day >= threshold
    if episodes.eligible_once_met:
        eligible = or_(eligible, met)
    having = or_(*(_condition(c, x, None, joins) for x in episodes.having)) if episodes.having else true()
    # Every cohort episode is observed; one outside ``having`` is not eligible.
    return _Frame(joins.onto(c), and_(having, eligible), met, true(), None)


def _one(flag: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((flag, 1), else_=0)), 0)


def _proportion(db: Any, c: Any, spec: MeasureSpec, facts: bool) -> dict[str, Counts]:
    frame = _frame(c, spec, facts)
    query = (
        select(
            c.c.month,
            _one(frame.observed).label("observed"),
            _one(frame.eligible).label("eligible"),
            _one(and_(frame.eligible, frame.met)).label("numerator"),
        )
        .select_from(frame.source)
        .group_by(c.c.month)
    )
    return {
        row.month: Counts(numerator=row.numerator, eligible=row.eligible, observed=row.observed)
        for row in db.execute(query)
    }


def _median(db: Any, c: Any, spec: MeasureSpec, facts: bool) -> dict[str, Counts]:
    """Each eligible episode's latest value up to the day, counted by value per month and
    overall: the median is read off that histogram (SQLite has no percentile aggregate)."""
    key = value_fact(spec) if facts else None
    latest = _latest_kept(c, spec, key) if key else _latest_recorded(db, c, spec)
    query = (
        select(latest.c.month, latest.c.value, func.count().label("n"))
        .where(latest.c.value.is_not(None))
        .group_by(latest.c.month, latest.c.value)
    )
    histograms: dict[str, dict[float, int]] = {}
    for row in db.execute(query):
        for bucket in (row.month, ALL):
            counts = histograms.setdefault(bucket, {})
            counts[row.value] = counts.get(row.value, 0) + row.n
    return {bucket: Counts(eligible=sum(h.values()), median=_median_of(h)) for bucket, h in histograms.items()}


def _given(c: Any, spec: MeasureSpec) -> tuple[Any, ColumnElement[bool]]:
    """The enrollment's value and whether it counts (given, on a day up to the limit, inside E)."""
    value = spec.value
    assert value is not None
    if not value.enrollment_field:
        return cast(literal(None), Integer), false()
    given = c.c[_column_name(value.enrollment_field)]
    day = c.c.enrolled_day
    return given, and_(given.is_not(None), day <= value.up_to_day, day <= c.c.end_day)


def _latest_kept(c: Any, spec: MeasureSpec, key: str) -> Any:
    """From the kept latest event (value_fact): it wins over the enrollment's value unless it lies
    before the enrollment day (on the same day the event, recorded after, is the later)."""
    assert spec.episodes is not None
    kept = select(FACTS.c.episode_id, FACTS.c.day, FACTS.c.value).where(FACTS.c.fact == key).subquery("kept")
    given, counts = _given(c, spec)
    event_wins = and_(kept.c.day.is_not(None), or_(not_(counts), kept.c.day >= c.c.enrolled_day))
    value = case((event_wins, kept.c.value), (counts, given), else_=None).label("value")
    return (
        select(c.c.month, value)
        .select_from(c.outerjoin(kept, kept.c.episode_id == c.c.episode_id))
        .where(c.c.end_day >= spec.episodes.observed_days)
        .subquery("latest")
    )


def _latest_recorded(db: Any, c: Any, spec: MeasureSpec) -> Any:
    """From the events themselves: each eligible episode's rows ranked (narrow rows that carry
    the value itself: no second look-up of the winning event)."""
    value, episodes = spec.value, spec.episodes
    assert value is not None and episodes is not None
    eligible, limit = c.c.end_day >= episodes.observed_days, value.up_to_day
    ev = EVENTS.alias("ev")
    day = DayDiff(ev.c.occurred_on, c.c.identified_on)
    parts = [
        select(
            c.c.episode_id,
            c.c.month,
            day.label("day"),
            literal(1).label("seq"),
            ev.c.recorded_at.label("at"),
            ev.c.payload[value.field].as_integer().label("value"),
        )
        .select_from(c.join(ev, ev.c.episode_id == c.c.episode_id))
        .where(eligible, ev.c.type.in_(value.event_types), day <= limit, day <= c.c.end_day)
    ]
    if value.enrollment_field:
        given = c.c[_column_name(value.enrollment_field)]
        parts.append(
            select(
                c.c.episode_id,
                c.c.month,
                c.c.enrolled_day.label("day"),
                literal(0).label("seq"),
                cast(literal(None), EVENTS.c.recorded_at.type).label("at"),
                given.label("value"),
            ).where(eligible, c.c.enrolled_day <= limit, c.c.enrolled_day <= c.c.end_day, given.is_not(None))
        )
    return _latest_values(db, union_all(*parts).subquery("recorded"))


def _latest_values(db: Any, recorded: Any) -> Any:
    """Per episode: its month and the value of its latest row (day, then events after the
    enrollment on one day, then the later recording)."""
    r = recorded.c
    if db.dialect.name == "postgresql":
        value = LatestValue(r.day, r.seq, r.at, r.value).label("value")
        return select(r.month, value).group_by(r.episode_id, r.month).subquery("latest")
    rank = func.row_number().over(partition_by=r.episode_id, order_by=(r.day.desc(), r.seq.desc(), r.at.desc()))
    ranked = select(r.month, r.value, rank.label("rn")).subquery("ranked")
    return select(ranked.c.month, ranked.c.value).where(ranked.c.rn == 1).subquery("latest")


def _median_of(histogram: dict[float, int]) -> float:
    """The median of the values counted in ``histogram`` (the mean of the middle two if even)."""
    n, seen, middle = sum(histogram.values()), 0, []
    for value in sorted(histogram):
        for k in ((n + 1) // 2, (n + 2) // 2):
            if seen < k <= seen + histogram[value]:
                middle.append(value)
        seen += histogram[value]
    return float(sum(middle) / len(middle))


def _cohort_sizes(db: Any, c: Any) -> dict[str, int]:
    return {row.month: row.n for row in db.execute(select(c.c.month, func.count().label("n")).group_by(c.c.month))}


@dataclass(frozen=True)
class MeasureCounts:
    """Counts per measure id, for the whole cohort and per month of enrollment."""

    total: dict[str, Counts]
    months: dict[str, dict[str, Counts]]  # month -> measure id -> counts
    sizes: dict[str, int]  # month -> episodes in the cohort
    first_day: date | None  # the earliest day 0 in the cohort

    @property
    def cohort(self) -> int:
        return sum(self.sizes.values())


def measure_counts(engine: Engine, measures: MeasureSet, which: Period | Observed, kept: bool = True) -> MeasureCounts:
    """Every declared measure over the cohort ``which``: one aggregate query per measure, reading
    the kept facts (``kept=False``: everything counted from the events and items themselves)."""
    total: dict[str, Counts] = {}
    if kept:
        fill(engine, measures)  # once per declaration: the facts of episodes stored before
    with engine.connect() as db:
        facts = kept and filled(db, measures)
        c = _prepare(db, measures, which)
        sizes = _cohort_sizes(db, c)
        first_day = db.execute(select(func.min(c.c.identified_on))).scalar()
        months = {month: {} for month in sorted(sizes)}
        for spec in measures.measures:
            if spec.scoring == "median":
                found = _median(db, c, spec, facts)
                # Not eligible: the rest of the cohort (not observed to the day, or no value).
                found = {k: v.model_copy(update={"observed": sizes.get(k, 0)}) for k, v in found.items()}
                overall = found.pop(ALL, Counts()).model_copy(update={"observed": sum(sizes.values())})
            else:
                found = _proportion(db, c, spec, facts)
                overall = Counts(
                    numerator=sum(x.numerator for x in found.values()),
                    eligible=sum(x.eligible for x in found.values()),
                    observed=sum(x.observed for x in found.values()),
                )
            total[spec.id] = overall
            for month, by_measure in months.items():
                empty = Counts(observed=sizes[month] if spec.items is None else 0)
                by_measure[spec.id] = found.get(month, empty)
    return MeasureCounts(total=total, months=months, sizes=dict(sorted(sizes.items())), first_day=first_day)


# ---- drill-down -----------------------------------------------------------------------------------


def not_met(engine: Engine, measures: MeasureSet, which: Period | Observed, measure_id: str) -> list[dict[str, Any]]:
    """The eligible episodes (or items) that did not meet ``measure_id``, oldest enrollment first."""
    spec = measures.measure(measure_id)
    if spec.scoring == "median":
        return []
    fill(engine, measures)
    with engine.connect() as db:
        frame_facts = filled(db, measures)
        c = _prepare(db, measures, which)
        frame = _frame(c, spec, frame_facts)
        columns = [c.c.episode_id, c.c.patient_ref, c.c.identified_on, c.c.enrolled_on, c.c.end_day]
        if frame.item is not None:
            columns += [frame.item.c.code, frame.item.c.occasion, frame.item.c.day]
        query = (
            select(*columns)
            .select_from(frame.source)
            .where(frame.eligible, not_(frame.met))
            .order_by(c.c.enrolled_on, c.c.episode_id)
            .limit(DRILL_LIMIT)
        )
        return [dict(row._mapping) for row in db.execute(query)]


def store_version(engine: Engine) -> int:
    """Grows with every recording (each writes one audit entry): a report over an unchanged store
    is the same report."""
    with engine.connect() as db:
        return db.execute(select(func.max(AUDIT.c.id))).scalar() or 0


# ---- forecast -------------------------------------------------------------------------------------


def forecast(engine: Engine, as_of: date, weeks: int) -> list[dict[str, Any]]:
    """Per coming week from ``as_of`` (week 1 starts on ``as_of``): how many of each code the
    running episodes' clocks will raise, by assignee. One aggregate over ``coming_items``."""
    end = as_of + timedelta(days=7 * weeks)
    week = (DayDiff(COMING.c.due_on, literal(as_of, Date)) // 7).label("week")
    query = (
        select(week, COMING.c.code, COMING.c.assignee, func.count().label("count"))
        .where(COMING.c.due_on >= as_of, COMING.c.due_on < end)
        .group_by(week, COMING.c.code, COMING.c.assignee)
        .order_by(week, COMING.c.assignee, COMING.c.code)
    )
    with engine.connect() as db:
        return [
            {
                "week_start": (as_of + timedelta(days=7 * int(row.week))).isoformat(),
                "code": row.code,
                "assignee": row.assignee,
                "count": row.count,
            }
            for row in db.execute(query)
        ]


__all__ = ["MeasureCounts", "Observed", "Period", "forecast", "measure_counts", "not_met"]
