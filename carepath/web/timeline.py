"""The year at a glance: an SVG picture of an episode, computed here and drawn by a template.

Day 0 to 365+ across; phases as bands; milestones (done, skipped, upcoming); tasks as markers
by priority (row) and status (fill); recorded events; the pathway's own markers (ovcf-lumbar:
denosumab doses and the next one due). The milestones and markers come from the pathway through
the protocol. No script: it is plain markup, so it prints and passes the pages' CSP.
"""

from __future__ import annotations

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
    span = WIDTH - LEFT - RIGHT

    def x(day: int) -> float:
        return round(LEFT + span * max(0, day) / last, 1)

    # Phases: each "old->new" item ends one band and starts the next.
    changes = [(i["day"], i["code"].split("->")) for i in items if i["kind"] == "phase" and "->" in i["code"]]
    current = changes[0][1][0] if changes else episode.phase
    bands, start = [], 0
    for day, (_, new) in changes:
        bands.append({"x": x(start), "w": max(1.0, x(day) - x(start)), "name": current})
        current, start = new, day
    bands.append({"x": x(start), "w": max(1.0, x(last) - x(start)), "name": current})

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

    tasks = [
        {
            "x": x(i["day"]),
            "y": ROWS.get(i["priority"], ROWS["routine"]),
            "status": i["status"],
            "priority": i["priority"],
            "label": f"day {i['day']}: {i['code']} ({i['priority']}, {i['status']})",
        }
        for i in items
        if i.get("status")
    ]
    marks = [{"x": x(e.day), "label": f"day {e.day}: {e.type} {e.summary}"} for e in events]
    recorded = [
        RecordedEvent(id=e.id, type=e.type, occurred_on=e.occurred_on, day=e.day, payload=e.payload) for e in events
    ]
    own_marks = pathway.picture_marks(definition, recorded, list(getattr(episode, "upcoming", [])))
    doses = [{"x": x(m.day), "label": m.label} for m in own_marks if m.kind == "given"]
    next_dose = next((m for m in own_marks if m.kind == "expected"), None)
    ticks = [{"x": x(d), "day": d} for d in range(0, last + 1, 30)]
    months = [{"x": x(d), "label": (day0 + timedelta(days=d)).strftime("%b %Y")} for d in range(0, last + 1, 91)]
    return Markup(
        TEMPLATES.get_template("timeline.svg").render(
            width=WIDTH,
            height=HEIGHT,
            left=LEFT,
            rows=ROWS,
            bands=bands,
            milestones=milestones,
            tasks=tasks,
            events=marks,
            doses=doses,
            next_dose={"x": x(next_dose.day), "label": next_dose.label} if next_dose else None,
            ticks=ticks,
            months=months,
            today={"x": x(today_day), "label": f"today, day {today_day}"} if 0 <= today_day <= last else None,
        )
    )
