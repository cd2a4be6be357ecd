"""A recorded cohort without Temporal: stories played by the pure rules and written through the
production recording code (``write_changes``), as the workflow would, with their events and
coming items. For the measures page test, its screenshots and ``bench/measures.py``.

The schedule is simulate's: enrollment at 08:00, events at 12:00 on their day; the clock then
runs to ``until`` (12:00), so whatever was due by then is recorded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy.orm import Session

from activities.recording import ChangeRecord, ComingItem, EpisodeOpened, RecordedEvent, write_changes
from carepath.engine.items import Changes
from carepath.errors import InvalidInput
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR

AGENTS = ["alendronate", "risedronate", "zoledronic_acid", "denosumab"]


@dataclass
class Played:
    """One patient's story in dates: day 0, the enrollment day, events by day."""

    ref: str
    day0: date
    enroll_day: int = 0
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    enrollment: dict[str, Any] = field(default_factory=dict)


def _at(day0: date, day: int, clock: time) -> datetime:
    return datetime.combine(day0 + timedelta(days=day), clock, UTC)


def _coming(state: Any, now: datetime) -> list[ComingItem]:
    return [ComingItem(due_on=i.on, code=i.code, assignee=i.assignee or "") for i in OVCF_LUMBAR.coming(state, now)]


def record(session: Session, episode_id: str, story: Played, until: date) -> None:
    """Play ``story`` up to ``until`` and write every step as the workflow's recordings would."""
    definition = OVCF_LUMBAR.definition(1)
    body = {
        "identified_on": story.day0.isoformat(),
        "patient": {"ref": story.ref, "age": 74, "sex": "female"},
        "fracture": {"levels": ["L2"], "acute_injury": False, "correlating_symptoms": False},
        "pain_nrs": 6,
        "analgesics": ["nsaid"],
        "imaging": [{"performed_on": story.day0.isoformat(), "modality": "xray"}],
    } | story.enrollment
    enrollment = OVCF_LUMBAR.parse_enrollment(body)
    now = _at(story.day0, story.enroll_day, time(8))
    state, changes = OVCF_LUMBAR.enroll(definition, enrollment, episode_id, now, OVCF_LUMBAR.rules_revision)
    opened = EpisodeOpened(
        patient_ref=story.ref,
        pathway_id=definition.id,
        pathway_version=definition.version,
        identified_on=story.day0,
        enrolled_on=state.enrolled_on,
        enrollment=enrollment.model_dump(mode="json"),
    )
    seq = 0

    def write(action: str, changes: Changes, **extra: Any) -> None:
        nonlocal seq
        seq += 1
        record = ChangeRecord(
            change_id=f"{episode_id}/{seq}",
            episode_id=episode_id,
            at=now,
            phase=state.phase,
            actor="coordinator:cohort",
            action=action,
            changes=changes,
            coming=_coming(state, now),
            **extra,
        )
        write_changes(session, record)

    write("enroll", changes, opened=opened)
    for day, event in sorted(story.events, key=lambda e: e[0]):
        if story.day0 + timedelta(days=day) > until:
            break
        now = _at(story.day0, day, time(12))
        parsed = OVCF_LUMBAR.parse_event({**event, "occurred_on": (story.day0 + timedelta(days=day)).isoformat()})
        try:
            state, changes = OVCF_LUMBAR.apply_event(state, parsed, now)
        except InvalidInput:
            continue  # e.g. after the episode ended: nothing recorded, as the API would refuse it
        payload = parsed.model_dump(mode="json")
        recorded = RecordedEvent(
            event_id=f"{episode_id}-{seq}", type=parsed.type, occurred_on=parsed.occurred_on, payload=payload
        )
        write(f"event:{parsed.type}", changes, event=recorded)
    now = max(now, datetime.combine(until, time(12), UTC))
    state, changes = OVCF_LUMBAR.advance(state, now)
    write("clock", changes)


def typical(ref: str, day0: date, rng: random.Random) -> Played:
    """A patient of a plausible mix: most start therapy within days, some late or never; most
    answer their reassessments, some miss one; some resolve, some stay in pain, a few withdraw,
    a few have a new fracture or get an MRI."""
    events: list[tuple[int, dict[str, Any]]] = []
    story = Played(ref=ref, day0=day0, enroll_day=rng.choice([0, 0, 1, 2, 3, 5]))
    start, therapy = rng.random(), {"type": "medication_started", "agent": rng.choice(AGENTS)}
    if start < 0.6:
        events.append((story.enroll_day + rng.randint(0, 6), therapy))
    elif start < 0.8:
        events.append((rng.randint(20, 140), therapy))
    nrs = rng.randint(4, 8)
    for milestone in (28, 42, 56, 91):
        if rng.random() < 0.8:
            nrs = max(0, min(10, nrs + rng.choice([-2, -1, -1, 0, 1])))
            analgesics = [] if nrs <= 2 and rng.random() < 0.5 else ["nsaid"]
            answer = {"type": "pain_assessment", "nrs": nrs, "analgesics": analgesics}
            events.append((milestone + rng.randint(0, 6), answer))
    if rng.random() < 0.15:
        events.append((rng.randint(100, 130), {"type": "imaging", "modality": "mri"}))
    if rng.random() < 0.08:
        events.append((rng.randint(60, 300), {"type": "imaging", "modality": "xray", "new_fracture": True}))
    if rng.random() < 0.06:
        events.append((rng.randint(10, 200), {"type": "withdraw", "reason": "transferred"}))
    story.events = events
    return story
