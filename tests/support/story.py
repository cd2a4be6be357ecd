"""Drive the pure rules through a patient's story on a simulated clock (no Temporal, no DB).

Same schedule as ``carepath simulate``: enrollment at 08:00, milestone actions and due checks
at 09:00, events at 12:00 on their day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from carepath.engine.items import TaskClosure, TimelineEntry
from carepath.errors import InvalidInput
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.pathways.ovcf_lumbar.definition import PathwayDefinition, load_definition
from carepath.pathways.ovcf_lumbar.inputs import Enrollment, parse_event, parse_model
from carepath.pathways.ovcf_lumbar.state import EpisodeState

DAY0 = date(2026, 3, 2)


def base_enrollment(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "identified_on": DAY0.isoformat(),
        "patient": {"ref": "p-1", "age": 70, "sex": "female"},
        "fracture": {"levels": ["L2"], "acute_injury": False, "correlating_symptoms": False},
        "pain_nrs": 5,
        "analgesics": ["nsaid"],
        "contraindications": [],
        "osteoporosis_therapy": None,
        "calcium_vitamin_d": False,
        "imaging": [{"performed_on": DAY0.isoformat(), "modality": "xray"}],
        "red_flags": [],
    }
    for key, value in overrides.items():
        if key in ("age", "ref", "sex"):
            data["patient"] = {**data["patient"], key: value}
        elif key in ("levels", "acute_injury", "correlating_symptoms"):
            data["fracture"] = {**data["fracture"], key: value}
        else:
            data[key] = value
    return data


def at(day: int, clock: time) -> datetime:
    return datetime.combine(DAY0 + timedelta(days=day), clock, UTC)


def on(day: int) -> str:
    return (DAY0 + timedelta(days=day)).isoformat()


class Story:
    def __init__(
        self,
        enroll_day: int = 0,
        definition: PathwayDefinition | None = None,
        rules_revision: int = OVCF_LUMBAR.rules_revision,
        **enrollment: Any,
    ) -> None:
        self.definition = definition or load_definition(version=1)  # the SPEC the tests pin
        self.items: list[TimelineEntry] = []
        self.closures: list[TaskClosure] = []
        self.rejected: list[InvalidInput] = []
        self.now = at(enroll_day, time(8, 0))
        model = parse_model(Enrollment, base_enrollment(**enrollment))
        self.state: EpisodeState
        self.state, changes = OVCF_LUMBAR.enroll(
            self.definition, model, "ep-test", self.now, rules_revision=rules_revision
        )
        self._take(changes)

    def _take(self, changes: Any) -> None:
        self.items += changes.items
        self.closures += changes.closures

    def until(self, day: int, clock: time = time(12, 0)) -> Story:
        self.now = max(self.now, at(day, clock))
        self.state, changes = OVCF_LUMBAR.advance(self.state, self.now)
        self._take(changes)
        return self

    def event(self, day: int, type: str, **fields: Any) -> Story:
        """Submit an event at 12:00 on ``day``; a rejection is kept in ``rejected``."""
        self.until(day)
        event = parse_event({"type": type, "occurred_on": on(day), **fields})
        try:
            self.state, changes = OVCF_LUMBAR.apply_event(self.state, event, self.now)
        except InvalidInput as exc:
            self.rejected.append(exc)
            return self
        self._take(changes)
        return self

    def close(self, day: int, code: str, status: str = "completed", reason: str = "done") -> Story:
        """A person closes every open item with ``code`` at 12:00 on ``day``."""
        self.until(day)
        for task in [t for t in self.state.open_tasks if t.code == code]:
            self.state, changes = OVCF_LUMBAR.close_task(self.state, task.key, status, reason, self.now)
            self._take(changes)
        return self

    def assess(self, day: int, nrs: int, analgesics: list[str] | None = None, **fields: Any) -> Story:
        return self.event(day, "pain_assessment", nrs=nrs, analgesics=analgesics or [], **fields)

    # -- reading --

    def days(self, code: str) -> list[int]:
        return [i.day for i in self.items if i.code == code]

    def item(self, code: str) -> TimelineEntry:
        found = [i for i in self.items if i.code == code]
        assert len(found) == 1, f"{code} raised {len(found)} times: {[i.day for i in found]}"
        return found[0]

    def codes(self) -> list[str]:
        return [i.code for i in self.items]

    @property
    def phase(self) -> str:
        return self.state.phase

    def open_codes(self) -> list[str]:
        return [t.code for t in self.state.open_tasks]
