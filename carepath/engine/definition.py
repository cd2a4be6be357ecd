"""What every pathway definition has: identity, clock, and the actions it can raise.

A definition is data (``definitions/<id>.v<version>.json`` in the pathway's package), validated
by the pathway's own model, which extends ``DefinitionCore``. An episode keeps the definition it
was enrolled on for life: the workflow carries it, so editing a file never changes a running
episode.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time
from importlib import resources
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from carepath.engine.vocabulary import Assignee, Kind, Priority


class DefinitionData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClockSpec(DefinitionData):
    timezone: str = "UTC"
    action_time: time = time(9, 0)
    max_backdate_days: int = Field(364, ge=0)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class RepeatSpec(DefinitionData):
    """How often an action may be raised again (ovcf-lumbar SPEC section 8, amended 2026-12-01)."""

    # "once_per_occasion": at most once per occasion (its milestone, its dose, the enrollment).
    # "unless_open": every triggering event raises it again, unless an item with the same code
    # is still open; the open one stays the one to act on.
    when: Literal["once_per_occasion", "unless_open"] = "once_per_occasion"
    # With "unless_open": a trigger naming something no open item names (a new red flag) raises a
    # new item all the same, because it is new information for whoever acts on it.
    new_subject_raises: bool = False


class ActionSpec(DefinitionData):
    """One code the pathway can raise, and the shape of the item it becomes."""

    kind: Kind
    priority: Priority
    assignee: Assignee
    title: str
    detail: str = ""
    evidence: list[str] = []
    due_in_days: int | None = None  # 0: due the day it is raised (urgent work)
    notify: bool = False
    # Still open this many hours after it was raised: its role is notified again, and it heads
    # the daily digest (a notification, not a timeline item; None: never).
    renotify_after_hours: int | None = Field(None, ge=1)
    repeat: RepeatSpec = RepeatSpec()


class DefinitionCore(DefinitionData):
    id: str
    version: int = Field(ge=1)
    title: str
    source: str = ""
    changes: str = ""  # what this version changed from the previous one
    clock: ClockSpec = ClockSpec()
    actions: dict[str, ActionSpec]

    @property
    def key(self) -> str:
        return f"{self.id}.v{self.version}"


D = TypeVar("D", bound=DefinitionCore)

_SHARED: dict[str, DefinitionCore] = {}


def shared(definition: D) -> D:
    """One instance per distinct definition, however many episodes carry it (definitions are
    immutable): thousands of sleeping episodes then hold one copy, not thousands."""
    key = definition.model_dump_json()
    return _SHARED.setdefault(key, definition)  # type: ignore[return-value]


def local_date(definition: DefinitionCore, at: datetime) -> date:
    """The clinic's calendar date at instant ``at``."""
    return at.astimezone(ZoneInfo(definition.clock.timezone)).date()


def action_time(definition: DefinitionCore, on: date) -> datetime:
    """When the day's timed actions run (09:00 clinic time by default)."""
    return datetime.combine(on, definition.clock.action_time, tzinfo=ZoneInfo(definition.clock.timezone))


class DefinitionFiles:
    """The versions of one pathway shipped as ``<package>/definitions/<id>.v<N>.json``."""

    def __init__(self, package: str, pathway_id: str, model: type[DefinitionCore]) -> None:
        self.package, self.pathway_id, self.model = package, pathway_id, model
        self._loaded: dict[int, DefinitionCore] = {}

    def versions(self) -> list[int]:
        folder = resources.files(self.package) / "definitions"
        prefix = f"{self.pathway_id}.v"
        return sorted(
            int(entry.name[len(prefix) : -len(".json")])
            for entry in folder.iterdir()
            if entry.name.startswith(prefix) and entry.name.endswith(".json")
        )

    def load(self, version: int | None = None) -> DefinitionCore:
        """The definition at ``version`` (default: the newest shipped)."""
        versions = self.versions()
        if not versions:
            raise LookupError(f"no pathway definition named {self.pathway_id!r}")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise LookupError(f"pathway {self.pathway_id!r} has no version {chosen} (have {versions})")
        if chosen not in self._loaded:
            path = resources.files(self.package) / "definitions" / f"{self.pathway_id}.v{chosen}.json"
            definition = self.model.model_validate(json.loads(path.read_text(encoding="utf-8")))
            if definition.id != self.pathway_id or definition.version != chosen:
                raise ValueError(f"{path.name} declares {definition.key}")
            self._loaded[chosen] = shared(definition)
        return self._loaded[chosen]
