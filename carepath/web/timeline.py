"""The year at a glance: an SVG picture of an episode, computed here and drawn by a template.

Day 0 to 365+ across; phases as bands; milestones (done, skipped, upcoming); tasks as markers
by priority (row) and status (fill); recorded events; the pathway's own markers (ovcf-lumbar:
denosumab doses and the next one due). The milestones and markers come from the pathway through
the protocol. No script: it is plain markup, so it prints and passes the pages' CSP.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

from markupsafe import Markup

from carepath.engine.pathway import Pathway
from carepath.engine.presentation import RecordedEvent
from carepath.web.guard import TEMPLATES  # one template environment (autoescaped) for the pages
from db.queries import EventView

WIDTH, LEFT, RIGHT = 1000, 60, 20
ROWS = {"phase": 30, "milestone": 70, "urgent": 100, "high": 120, "routine": 140, "event": 170, "marks": 195}
HEIGHT = 235


def timeline_svg(episode: Any, events: list[EventView], pathway: Pathway, definition: Any, today: date) -> Markup:
    day0 = episode.identified_on
    today_day = (today - day0).days
    items = episode.timeline
    last = max([365, today_day, *(i["day"] for i in items), *(e.day for e in events)]) + 10
    x = _Scale(last)
    upcoming = list(getattr(episode, "upcoming", []))
    return Markup(
        TEMPLATES.get_template("timeline.svg").render(
            width=WIDTH,
            height=HEIGHT,
            left=LEFT,
            rows=ROWS,
            bands=_phase_bands(items, episode.phase, x),
            milestones=_milestones(pathway, definition, episode, today_day, x),
            **_markers(items, events, x),
            **_pathway_marks(pathway, definition, events, upcoming, x),
            **_axis(day0, x),
            today={"x": x(today_day), "label": f"today, day {today_day}"} if 0 <= today_day <= last else None,
        )
    )


class _Scale:
    """Day 0 to ``last`` across the picture's width: a day's x."""

    def __init__(self, last: int) -> None:
        self.last = last

    def __call__(self, day: int) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * max(0, day) / self.last, 1)


def _axis(day0: date, x: _Scale) -> dict[str, list[dict[str, Any]]]:
    """A tick every 30 days, and the first of each month labelled."""
    starts = month_starts(day0, day0 + timedelta(days=x.last))
    return {
        "ticks": [{"x": x(d), "day": d} for d in range(0, x.last + 1, 30)],
        "months": [{"x": x((on - day0).days), "label": label} for on, label in starts],
    }


def _phase_bands(items: list[dict[str, Any]], phase: str, x: _Scale) -> list[dict[str, Any]]:
    """The phases as bands: each "old->new" item ends one band and starts the next."""
    changes = [(i["day"], i["code"].split("->")) for i in items if i["kind"] == "phase" and "->" in i["code"]]
    current = changes[0][1][0] if changes else phase
    bands, start = [], 0
    for day, (_, new) in changes:
        bands.append({"x": x(start), "w": max(1.0, x(day) - x(start)), "name": current})
        current, start = new, day
    bands.append({"x": x(start), "w": max(1.0, x(x.last) - x(start)), "name": current})
    return bands


def _milestones(pathway: Pathway, definition: Any, episode: Any, today_day: int, x: _Scale) -> list[dict[str, Any]]:
    """The pathway's milestones, each done, skipped, upcoming or not reached."""
    items = episode.timeline
    skipped = {i["occasion"] for i in items if i["kind"] == "skipped"}
    due_names = {p.ref for p in getattr(episode, "upcoming", []) if p.what == "milestone"}
    milestones = []
    for name, day in pathway.milestone_days(definition):
        if name in skipped:
            state = "skipped"
        elif name in due_names or (day > today_day and episode.status == "active"):
            state = "upcoming"
        else:
            state = "done" if day <= today_day or any(i["occasion"] == name for i in items) else "not-reached"
        milestones.append({"x": x(day), "name": name, "day": day, "state": state})
    return milestones


def _markers(items: list[dict[str, Any]], events: list[EventView], x: _Scale) -> dict[str, list[dict[str, Any]]]:
    """Tasks by priority (row) and status (fill), and the recorded events."""
    spread = _Spread()  # markers on one day and row sit side by side instead of on one another
    tasks = [
        {
            "x": spread(x(i["day"]), i["priority"]),
            "y": ROWS.get(i["priority"], ROWS["routine"]),
            "status": i["status"],
            "priority": i["priority"],
            "label": f"day {i['day']}: {i['title']} ({i['code']}; {i['priority']}, {i['status']})",
        }
        for i in items
        if i.get("status")
    ]
    marks = [{"x": spread(x(e.day), "event"), "label": f"day {e.day}: {e.summary}"} for e in events]
    return {"tasks": tasks, "events": marks}


def _pathway_marks(
    pathway: Pathway, definition: Any, events: list[EventView], upcoming: list[Any], x: _Scale
) -> dict[str, Any]:
    """The pathway's own markers (ovcf-lumbar: denosumab doses given, and the next one due)."""
    recorded = [
        RecordedEvent(id=e.id, type=e.type, occurred_on=e.occurred_on, day=e.day, payload=e.payload) for e in events
    ]
    own_marks = pathway.picture_marks(definition, recorded, upcoming)
    next_dose = next((m for m in own_marks if m.kind == "expected"), None)
    return {
        "doses": [{"x": x(m.day), "label": m.label} for m in own_marks if m.kind == "given"],
        "next_dose": {"x": x(next_dose.day), "label": next_dose.label} if next_dose else None,
    }


class _Spread:
    """Where the n-th marker of one row at one x goes: 7 units further right each (12 at most)."""

    def __init__(self) -> None:
        self.seen: Counter[tuple[float, str]] = Counter()

    def __call__(self, x: float, row: str) -> float:
        n = self.seen[(x, row)]
        self.seen[(x, row)] += 1
        return round(x + 7 * min(n, 12), 1)


def month_starts(first: date, last: date) -> list[tuple[date, str]]:
    """The first day of every month from ``first`` to ``last``, each labelled ("Jan 2027" in
    January and on the first label, else "Feb")."""
    found: list[tuple[date, str]] = []
    on = first.replace(day=1)
    while on <= last:
        if on >= first:
            label = on.strftime("%b %Y") if not found or on.month == 1 else on.strftime("%b")
            found.append((on, label))
        on = (on.replace(day=28) + timedelta(days=4)).replace(day=1)
    return found
