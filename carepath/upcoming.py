"""What comes next for an episode: its upcoming milestones, due checks and denosumab doses.

From the workflow's own state when it answers (exact), else from the store and the definition
(milestones by date only). Presentation, not decisions: the workflow's timers decide.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel

from carepath.engine.registry import pathway_for
from carepath.engine.state import EpisodeCore
from carepath.pathways.ovcf_lumbar.state import EpisodeState

DueWhat = Literal["milestone", "reassessment_check", "pharmacotherapy_check", "dose_reminder", "denosumab_dose"]


class DuePoint(BaseModel):
    on: date
    day: int  # days since fracture identification (day 0)
    what: DueWhat
    ref: str  # the milestone's name, or the dose's date
    title: str


def from_state(state: EpisodeCore) -> list[DuePoint]:
    # What ovcf-lumbar's clock owes, named for people; another pathway shows its milestones only.
    if state.finished or not isinstance(state, EpisodeState):
        return []
    d = state.definition
    points: list[tuple[date, DueWhat, str, str]] = []
    for spec in d.milestones:
        progress = state.milestones[spec.name]
        on = state.identified_on + timedelta(days=spec.day)
        if progress.status == "pending":
            points.append((on, "milestone", spec.name, f"{spec.name} milestone"))
        if progress.reassessment == "open":
            check = on + timedelta(days=d.reassessment.overdue_after_days)
            points.append((check, "reassessment_check", spec.name, f"{spec.name} pain reassessment overdue check"))
    if state.watchdog == "armed":
        check = state.enrolled_on + timedelta(days=d.pharmacotherapy_watchdog_days)
        points.append((check, "pharmacotherapy_check", "", "osteoporosis pharmacotherapy check"))
    if state.on_denosumab and state.denosumab_last_dose is not None:
        dose = state.denosumab_last_dose + timedelta(days=d.denosumab.interval_days)
        if state.denosumab_reminded_for != dose:
            remind = dose - timedelta(days=d.denosumab.reminder_lead_days)
            points.append((remind, "dose_reminder", dose.isoformat(), f"denosumab reminder for {dose.isoformat()}"))
        points.append((dose, "denosumab_dose", dose.isoformat(), "next denosumab dose"))
    return _points(state.identified_on, points)


def from_definition(pathway_id: str, version: int, identified_on: date, today: date) -> list[DuePoint]:
    """Milestones after today: what the definition alone can tell (no doses, no checks)."""
    d = pathway_for(pathway_id).definition(version)
    points: list[tuple[date, DueWhat, str, str]] = [
        (identified_on + timedelta(days=s.day), "milestone", s.name, f"{s.name} milestone")
        for s in getattr(d, "milestones", ())
    ]
    return _points(identified_on, [p for p in points if p[0] > today])


def _points(day0: date, points: list[tuple[date, DueWhat, str, str]]) -> list[DuePoint]:
    return [
        DuePoint(on=on, day=(on - day0).days, what=what, ref=ref, title=title)
        for on, what, ref, title in sorted(points)
    ]
