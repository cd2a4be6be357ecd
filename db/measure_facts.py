"""Per-episode facts the cohort measures read, kept at recording time.

Most of what a measure asks of an episode reduces to one number: the first day an event of
some types (with a field holding a value) happened inside a day range, the first day an item
with some codes (or a phase change) was raised, the latest value of a field recorded up to a
day. Those are stored per episode and fact (``measure_facts``), rewritten for the episode by
every recording inside the recording's own transaction (which holds the episode's row lock,
so two recordings of one episode never write its facts from different snapshots). A report
then reads one narrow indexed row per episode and fact instead of every event and item, and
compares the day with each episode's end day E itself (a fact never depends on the report).

What cannot be reduced so (an event within days of each population item, an item of the same
occasion, a value read up to a day past the observation window) is counted from the events
and items as before. A set of facts (a pathway's declared measures) is filled for the episodes
stored before it by the first report that needs it (``fill``), in batches; the set's row
(``measure_fact_sets``) says it is complete. A changed declaration is a new set.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.exc import IntegrityError

from carepath.engine.measures import Condition, EventMatch, ItemMatch, MeasureSet, MeasureSpec
from carepath.engine.registry import pathway_for
from db.measure_sql import DayDiff, event_where
from db.models import EpisodeRow, EventRow, MeasureFactRow, MeasureFactSetRow, TimelineItemRow

FACTS = MeasureFactRow.__table__
FACT_SETS = MeasureFactSetRow.__table__
EPISODES = EpisodeRow.__table__
EVENTS = EventRow.__table__
ITEMS = TimelineItemRow.__table__
# Bumped when what a stored fact means changes: every set is then filled again.
FACTS_VERSION = "1"
FILL_BATCH = 1000  # episodes per transaction of a fill


def _key(kind: str, model: BaseModel) -> str:
    return hashlib.sha256(f"{FACTS_VERSION}:{kind}:{model.model_dump_json()}".encode()).hexdigest()[:32]


def event_fact(match: EventMatch) -> str | None:
    """The key of "first day of such an event in its day range", if it is kept as a fact."""
    return _key("event", match) if match.days_after_item is None else None


def item_fact(match: ItemMatch) -> str | None:
    return _key("item", match) if not match.same_occasion else None


def value_fact(spec: MeasureSpec) -> str | None:
    """The key of "latest value up to the day": kept when the day lies inside the observation
    every eligible episode has (so that no episode's end day cuts it short)."""
    value, episodes = spec.value, spec.episodes
    if value is None or episodes is None or value.up_to_day > episodes.observed_days:
        return None
    return _key("value", value)


@dataclass(frozen=True)
class _Fact:
    event: EventMatch | None = None
    item: ItemMatch | None = None
    spec: MeasureSpec | None = None


def _conditions(spec: MeasureSpec) -> list[Condition]:
    return [*(spec.met.any + spec.met.none if spec.met else []), *(spec.episodes.having if spec.episodes else [])]


_KEPT: dict[int, tuple[MeasureSet, dict[str, _Fact]]] = {}


def facts_of(measures: MeasureSet) -> dict[str, _Fact]:
    """Every fact the declared measures read, by key (worked out once per declaration)."""
    held = _KEPT.get(id(measures))
    if held is not None and held[0] is measures:
        return held[1]
    facts: dict[str, _Fact] = {}
    for spec in measures.measures:
        for condition in _conditions(spec):
            if condition.event is not None and (key := event_fact(condition.event)):
                facts[key] = _Fact(event=condition.event)
            if condition.item is not None and (key := item_fact(condition.item)):
                facts[key] = _Fact(item=condition.item)
        if key := value_fact(spec):
            facts[key] = _Fact(spec=spec)
    _KEPT[id(measures)] = (measures, facts)
    return facts


def signature(measures: MeasureSet) -> str:
    keys = ",".join(sorted(facts_of(measures)))
    return hashlib.sha256(f"{measures.pathway}:{keys}".encode()).hexdigest()[:32]


# ---- computing facts ------------------------------------------------------------------------------


def _no_value() -> Any:
    return cast(literal(None), Integer).label("value")


def _event_rows(key: str, match: EventMatch, episodes: Any) -> Any:
    day = DayDiff(EVENTS.c.occurred_on, episodes.c.identified_on)
    return (
        select(EVENTS.c.episode_id, literal(key).label("fact"), func.min(day).label("day"), _no_value())
        .select_from(EVENTS.join(episodes, episodes.c.id == EVENTS.c.episode_id))
        .where(*event_where(EVENTS, match, day))
        .group_by(EVENTS.c.episode_id)
    )


def _item_rows(key: str, match: ItemMatch, episodes: Any) -> Any:
    kinds = [ITEMS.c.code.in_(match.codes)] if match.codes else []
    kinds += [(ITEMS.c.kind == "phase") & ITEMS.c.code.like(f"%->{p}") for p in match.phases_entered]
    return (
        select(ITEMS.c.episode_id, literal(key).label("fact"), func.min(ITEMS.c.day).label("day"), _no_value())
        .where(ITEMS.c.episode_id.in_(select(episodes.c.id)), or_(*kinds))
        .group_by(ITEMS.c.episode_id)
    )


def _value_rows(key: str, spec: MeasureSpec, episodes: Any) -> Any:
    """The latest event's value (NULL if it has none: it is still the latest) and its day."""
    value = spec.value
    assert value is not None
    day = DayDiff(EVENTS.c.occurred_on, episodes.c.identified_on)
    order = (day.desc(), EVENTS.c.recorded_at.desc())
    ranked = (
        select(
            EVENTS.c.episode_id,
            day.label("day"),
            EVENTS.c.payload[value.field].as_integer().label("value"),
            func.row_number().over(partition_by=EVENTS.c.episode_id, order_by=order).label("rn"),
        )
        .select_from(EVENTS.join(episodes, episodes.c.id == EVENTS.c.episode_id))
        .where(EVENTS.c.type.in_(value.event_types), day <= value.up_to_day)
        .subquery("ranked")
    )
    return select(ranked.c.episode_id, literal(key).label("fact"), ranked.c.day, ranked.c.value).where(ranked.c.rn == 1)


def _rows(key: str, fact: _Fact, episodes: Any) -> Any:
    if fact.event is not None:
        return _event_rows(key, fact.event, episodes)
    if fact.item is not None:
        return _item_rows(key, fact.item, episodes)
    assert fact.spec is not None
    return _value_rows(key, fact.spec, episodes)


def _facts_insert(facts: dict[str, _Fact], episodes: Any) -> Any:
    rows = union_all(*(_rows(key, fact, episodes) for key, fact in facts.items()))
    return insert(FACTS).from_select(["episode_id", "fact", "day", "value"], rows)


def _write(db: Connection, facts: dict[str, _Fact], episode_ids: list[str]) -> None:
    """The facts of ``episode_ids`` computed afresh from their events and items."""
    db.execute(delete(FACTS).where(FACTS.c.episode_id.in_(episode_ids)))
    if facts:
        episodes = select(EPISODES.c.id, EPISODES.c.identified_on).where(EPISODES.c.id.in_(episode_ids))
        db.execute(_facts_insert(facts, episodes.subquery("episodes")))


# One episode's rewrite, built once per declaration: a recording then only binds its episode id
# (building and compiling the union for every recording was most of a baseline's recording time).
_ONE_EPISODE: dict[int, tuple[MeasureSet, Any, Any]] = {}


def _one_episode(measures: MeasureSet) -> tuple[Any, Any]:
    held = _ONE_EPISODE.get(id(measures))
    if held is not None and held[0] is measures:
        return held[1], held[2]
    facts, episode = facts_of(measures), bindparam("episode_id")
    remove = delete(FACTS).where(FACTS.c.episode_id == episode)
    episodes = select(EPISODES.c.id, EPISODES.c.identified_on).where(EPISODES.c.id == episode)
    add = _facts_insert(facts, episodes.subquery("episodes")) if facts else None
    _ONE_EPISODE[id(measures)] = (measures, remove, add)
    return remove, add


def record_facts(db: Connection, episode_id: str, pathway_id: str) -> None:
    """Rewrite one episode's facts inside its recording's transaction (after its rows)."""
    remove, add = _one_episode(pathway_for(pathway_id).measures())
    db.execute(remove, {"episode_id": episode_id})
    if add is not None:
        db.execute(add, {"episode_id": episode_id})


# ---- filling a set for the episodes stored before ---------------------------------------------


def filled(db: Connection, measures: MeasureSet) -> bool:
    found = db.execute(select(FACT_SETS.c.signature).where(FACT_SETS.c.signature == signature(measures)))
    return found.first() is not None


def fill(engine: Engine, measures: MeasureSet, progress: Callable[[int], None] | None = None) -> int:
    """Compute every stored episode's facts of ``measures`` (once per declaration), in batches;
    each batch locks its episodes' rows first, as a recording does, so that no recording of them
    runs between reading their rows and writing their facts. Returns the episodes filled."""
    with engine.connect() as db:
        if filled(db, measures):
            return 0
    facts, done, last = facts_of(measures), 0, ""
    while True:
        with engine.begin() as db:
            batch = (
                select(EPISODES.c.id)
                .where(EPISODES.c.pathway_id == measures.pathway, EPISODES.c.id > last)
                .order_by(EPISODES.c.id)
                .limit(FILL_BATCH)
            )
            if db.dialect.name == "postgresql":
                batch = batch.with_for_update()
            ids = list(db.execute(batch).scalars())
            if not ids:
                break
            _write(db, facts, ids)
        done, last = done + len(ids), ids[-1]
        if progress is not None:
            progress(done)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.exec_driver_sql("ANALYZE measure_facts")  # the reports' plans need its statistics now
    try:
        with engine.begin() as db:
            row = {"signature": signature(measures), "pathway_id": measures.pathway, "filled_at": datetime.now(UTC)}
            db.execute(insert(FACT_SETS).values(row))
    except IntegrityError:
        pass  # a report running beside this one filled it too
    return done


__all__ = ["event_fact", "facts_of", "fill", "filled", "item_fact", "record_facts", "value_fact"]
