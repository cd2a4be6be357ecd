"""Cohort quality measures as pathway data: what a pathway declares, and how a result reads.

A pathway ships ``measures.json`` in its package (beside ``definitions/``): an observation rule
and a list of measures, each naming its population (episodes, or items the pathway raised),
the window that must have passed inside the observation, what meets it, and its bands. The
declaration is separate from the versioned definition on purpose: a definition is carried in
every running episode's state, while a measure is read over the store and can change without
touching a single episode. ``db/measures.py`` turns a declaration into SQL aggregates; this
module knows no SQL and no pathway.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Literal

from pydantic import Field, model_validator

from carepath.engine.definition import DefinitionData

Scalar = str | int | bool
Colour = Literal["red", "amber", "green"]


class FieldMatch(DefinitionData):
    """A JSON field (dotted path) whose value is one of ``values`` (all of one type)."""

    field: str = Field(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
    values: list[Scalar] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_type(self) -> FieldMatch:
        if len({type(v) for v in self.values}) != 1:
            raise ValueError(f"{self.field}: values must all be of one type")
        return self


class EventMatch(DefinitionData):
    """A recorded event of one of ``types`` (with ``where`` holding), on a day in ``days``
    (days after day 0, inclusive; None: unbounded) or, for an item population, in
    ``days_after_item`` (relative to the item's own day)."""

    types: list[str] = Field(min_length=1)
    where: FieldMatch | None = None
    days: tuple[int | None, int | None] = (None, None)
    days_after_item: tuple[int, int] | None = None


class ItemMatch(DefinitionData):
    """A timeline item the pathway raised: one of ``codes``, or a phase change into one of
    ``phases_entered``; ``same_occasion``: with the population item's occasion."""

    codes: list[str] = []
    phases_entered: list[str] = []
    same_occasion: bool = False

    @model_validator(mode="after")
    def _something(self) -> ItemMatch:
        if not self.codes and not self.phases_entered:
            raise ValueError("an item match needs codes or phases_entered")
        return self


class Condition(DefinitionData):
    """Exactly one of: an event, an item, an enrollment field. Only what happened inside the
    observation (on or before the end day) counts."""

    event: EventMatch | None = None
    item: ItemMatch | None = None
    enrollment: FieldMatch | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        if sum(x is not None for x in (self.event, self.item, self.enrollment)) != 1:
            raise ValueError("a condition is exactly one of event, item, enrollment")
        return self


class Met(DefinitionData):
    """Met when any of ``any`` holds (if given) and none of ``none`` holds (if given)."""

    any: list[Condition] = []
    none: list[Condition] = []

    @model_validator(mode="after")
    def _something(self) -> Met:
        if not self.any and not self.none:
            raise ValueError("met needs any or none")
        return self


class EpisodePopulation(DefinitionData):
    """Episodes of the cohort that were observed ``observed_days`` after day 0 (or after their
    enrollment day, with ``from_enrollment``), restricted to those where any of ``having`` held.
    ``eligible_once_met``: an episode that met the measure inside its observation counts before
    the window has passed (an event that happened cannot un-happen)."""

    observed_days: int = Field(0, ge=0)
    from_enrollment: bool = False
    having: list[Condition] = []
    eligible_once_met: bool = False


class ItemPopulation(DefinitionData):
    """Each timeline item with one of ``codes`` (and one of ``occasions``, if given) raised inside
    the observation, eligible once ``observed_days`` have passed after its day."""

    codes: list[str] = Field(min_length=1)
    occasions: list[str] = []
    observed_days: int = Field(0, ge=0)


class LatestValue(DefinitionData):
    """The latest number recorded on a day <= ``up_to_day``: the enrollment's ``enrollment_field``
    counts as the first (on the enrollment day), then each event's ``field``, by day then by the
    order recorded."""

    enrollment_field: str | None = None
    event_types: list[str] = Field(min_length=1)
    field: str
    up_to_day: int = Field(ge=0)


class Band(DefinitionData):
    """A rate band, as a percentage: ``below`` (exclusive) or ``up_to`` (inclusive); the first
    band that matches is the rate's; a band with neither matches everything left."""

    colour: Colour
    label: str
    below: float | None = None
    up_to: float | None = None

    def holds(self, percent: float) -> bool:
        if self.below is not None:
            return percent < self.below
        if self.up_to is not None:
            return percent <= self.up_to
        return True


class MeasureSpec(DefinitionData):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    title: str
    description: str  # what it means, in the reader's words
    reference: str = ""
    # proportion: numerator / eligible with a band; share: a descriptive proportion (no band);
    # median: the median of a value over the population.
    scoring: Literal["proportion", "share", "median"]
    episodes: EpisodePopulation | None = None
    items: ItemPopulation | None = None
    met: Met | None = None
    value: LatestValue | None = None
    bands: list[Band] = []

    @model_validator(mode="after")
    def _complete(self) -> MeasureSpec:
        if (self.episodes is None) == (self.items is None):
            raise ValueError(f"{self.id}: give exactly one of episodes or items")
        if self.scoring == "median":
            if self.value is None or self.items is not None:
                raise ValueError(f"{self.id}: a median needs value and an episode population")
        elif self.met is None:
            raise ValueError(f"{self.id}: a {self.scoring} needs met")
        if self.scoring == "proportion" and not self.bands:
            raise ValueError(f"{self.id}: a proportion needs bands")
        return self

    @property
    def unit(self) -> str:
        return "items" if self.items is not None else "episodes"

    def band(self, rate: float | None) -> Band | None:
        if rate is None:
            return None
        return next((b for b in self.bands if b.holds(rate * 100)), None)


class Observation(DefinitionData):
    """An episode is observed from day 0 to its end day: the earliest of the report's as-of day
    and the day of its ``ends_with_event`` (withdrawal)."""

    ends_with_event: str | None = None


class MeasureSet(DefinitionData):
    pathway: str
    observation: Observation = Observation()
    measures: list[MeasureSpec]

    @model_validator(mode="after")
    def _unique(self) -> MeasureSet:
        ids = [m.id for m in self.measures]
        if len(ids) != len(set(ids)):
            raise ValueError("measure ids must be unique")
        return self

    def measure(self, measure_id: str) -> MeasureSpec:
        for spec in self.measures:
            if spec.id == measure_id:
                return spec
        raise LookupError(f"no measure {measure_id!r}; known: {', '.join(m.id for m in self.measures)}")


def load_measures(package: str, pathway_id: str) -> MeasureSet:
    """``<package>/measures.json``; a pathway that ships none declares no measures."""
    path = resources.files(package) / "measures.json"
    if not path.is_file():
        return MeasureSet(pathway=pathway_id, measures=[])
    measures = MeasureSet.model_validate(json.loads(path.read_text(encoding="utf-8")))
    if measures.pathway != pathway_id:
        raise ValueError(f"{package}/measures.json declares pathway {measures.pathway!r}")
    return measures


# ---- results --------------------------------------------------------------------------------


class Counts(DefinitionData):
    """One measure's counts over a cohort (or one month of it), straight from the database."""

    numerator: int = 0
    eligible: int = 0
    observed: int = 0  # the population before the window rule: eligible + not eligible
    median: float | None = None


def result(spec: MeasureSpec, counts: Counts) -> dict[str, Any]:
    """The measure as reported (MEASURES.md's fields): proportions with ``band``, shares with
    their population, medians with the number of episodes."""
    not_eligible = counts.observed - counts.eligible
    out: dict[str, Any] = {"title": spec.title, "scoring": spec.scoring, "unit": spec.unit}
    if spec.scoring == "median":
        return out | {"median": counts.median, "population": counts.eligible, "not_eligible": not_eligible}
    rate = counts.numerator / counts.eligible if counts.eligible else None
    if spec.scoring == "share":
        return out | {
            "numerator": counts.numerator,
            "population": counts.eligible,
            "not_eligible": not_eligible,
            "rate": rate,
        }
    band = spec.band(rate)
    return out | {
        "numerator": counts.numerator,
        "denominator": counts.eligible,
        "not_eligible": not_eligible,
        "rate": rate,
        "band": band.colour if band else None,
    }
