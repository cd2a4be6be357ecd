"""One step of a pathway's rules: on one clinic day, mutate one (already copied) state and collect
the changes to record. A pathway's rule functions take a ``Step`` and call ``raise_``, ``close``
and ``set_phase``; how often a code may be raised is the definition's ``repeat`` policy.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Generic, TypeVar

from carepath.engine.definition import RepeatSpec
from carepath.engine.items import Changes, OpenTask, TaskClosure, TaskKey, TimelineEntry
from carepath.engine.state import EpisodeCore
from carepath.engine.vocabulary import ACTIONABLE_KINDS

S = TypeVar("S", bound=EpisodeCore)


class Step(Generic[S]):
    def __init__(self, state: S, on: date) -> None:
        self.state = state
        self.on = on
        self.changes = Changes()
        # The occasion of items this step raises on an event's account: what raised them, e.g.
        # ``red_flag-day250``; by default the period (``enrollment``, then the latest milestone).
        self.trigger = state.period

    @property
    def definition(self):  # typed by each pathway's Step subclass
        return self.state.definition

    @property
    def keys_by_period(self) -> bool:
        """True where a pathway's older rules revision keyed every item by the milestone period
        ("at most once per milestone") and knew no repeat policy; False for current rules."""
        return False

    def triggered_by(self, what: str, occurred_on: date) -> None:
        """Items raised from now on in this step were raised by ``what`` on ``occurred_on``."""
        self.trigger = f"{what}-day{self.state.day_of(occurred_on)}"

    # -- raising and closing --

    def raise_(
        self,
        code: str,
        occasion: str | None = None,
        extra: str = "",
        due_on: date | None = None,
        subjects: list[str] | None = None,
    ) -> bool:
        """Raise ``code`` for its occasion, as often as its repeat policy allows; True if raised.

        ``occasion`` defaults to what raised this step; ``subjects`` are what the item names (red
        flags), for a code whose new subjects raise it again.
        """
        state = self.state
        spec = state.definition.actions[code]
        subjects = subjects or []
        if not self.keys_by_period and spec.repeat.when == "unless_open":
            if self._still_open(code, subjects, spec.repeat):
                return False
            key = self._fresh_occasion(code, occasion or self.trigger)
        else:
            # Once per occasion (keyed by the period, an event's occasion was the milestone's).
            key = occasion or (state.period if self.keys_by_period else self.trigger)
            if str(TaskKey(code, key)) in state.raised:
                return False
        if due_on is None and spec.due_in_days is not None:
            due_on = self.on + timedelta(days=spec.due_in_days)
        detail = f"{spec.detail} {extra}".strip() if extra else spec.detail
        self._append(
            TimelineEntry(
                code=code,
                kind=spec.kind,
                priority=spec.priority,
                assignee=spec.assignee,
                title=spec.title,
                detail=detail,
                evidence=list(spec.evidence),
                day=state.day_of(self.on),
                on=self.on,
                milestone=key,
                due_on=due_on if spec.kind in ACTIONABLE_KINDS else None,
                notify=spec.notify,
            )
        )
        if spec.kind in ACTIONABLE_KINDS:
            state.open_tasks.append(OpenTask(code=code, milestone=key, subjects=subjects))
        return True

    def _still_open(self, code: str, subjects: list[str], repeat: RepeatSpec) -> bool:
        """An open item with ``code`` stays the one to act on, unless the trigger names
        something new that no open item names and the policy raises on new subjects."""
        still_open = [task for task in self.state.open_tasks if task.code == code]
        if not still_open:
            return False
        if not repeat.new_subject_raises:
            return True
        named = {subject for task in still_open for subject in task.subjects}
        return set(subjects) <= named

    def _fresh_occasion(self, code: str, occasion: str) -> str:
        """``occasion``, or ``occasion-2``, ``-3``.. if an item of ``code`` already has it (two
        red flags recorded for one day), so every raised item has its own identity."""
        candidate, n = occasion, 1
        while str(TaskKey(code, candidate)) in self.state.raised:
            n += 1
            candidate = f"{occasion}-{n}"
        return candidate

    def _append(self, item: TimelineEntry) -> None:
        self.state.raised.append(str(item.key))
        self.changes.items.append(item)

    def record(self, code: str, kind: str, title: str, occasion: str) -> None:
        """A timeline entry that is not an action: a phase change, a skipped milestone, a note."""
        self._append(
            TimelineEntry(
                code=code,
                kind=kind,  # type: ignore[arg-type]  # "phase", "skipped" or "info"
                priority="routine",
                assignee=None,
                title=title,
                day=self.state.day_of(self.on),
                on=self.on,
                milestone=occasion,
            )
        )

    def set_phase(self, phase: str, why: str) -> None:
        old = self.state.phase
        if old == phase:
            return
        self.state.phase = phase
        self.record(f"{old}->{phase}", "phase", f"Phase {old} -> {phase}: {why}", self.state.period)

    def close(self, code: str, status: str, reason: str, occasion: str | None = None) -> None:
        """Close the open tasks with ``code`` (only the one for ``occasion``, if given)."""
        keep: list[OpenTask] = []
        for task in self.state.open_tasks:
            if task.code == code and occasion in (None, task.milestone):
                self.changes.closures.append(
                    TaskClosure(code=task.code, milestone=task.milestone, status=status, reason=reason)  # type: ignore[arg-type]
                )
            else:
                keep.append(task)
        self.state.open_tasks = keep
