"""The audit trail as people read it: what was done in words, the task it concerned by its title
(its code as a secondary label), never ``closed CODE@occasion:status``."""

from __future__ import annotations

from typing import Any

from carepath.engine.pathway import Pathway

ACTIONS = {
    "enroll": "Enrolled the patient",
    "enroll:released": "Released an enrollment that never started",
    "clock": "The pathway acted on its schedule",
    "migrate": "Moved the episode to a newer pathway version",
    "task:completed": "Completed a task",
    "task:cancelled": "Cancelled a task",
    "task:assigned": "Gave a task to a person",
    "task:unassigned": "Handed a task back to its role",
    "checkin:sent": "Sent the patient a check-in link",
}
STATUS = {"completed": "completed", "cancelled": "cancelled"}


def audit_lines(trail: list[Any], pathway: Pathway, definition: Any) -> list[dict[str, Any]]:
    """Per audit entry: when, who, what (words) and its code, why, and the tasks it closed in words."""
    return [
        {
            "at": entry.at,
            "actor": entry.actor,
            "what": _what(entry.action, pathway, definition),
            "action": entry.action,
            "why": entry.detail.get("reason") or "",
            "closed": [_closed(item, pathway, definition) for item in entry.detail.get("closed") or []],
        }
        for entry in trail
    ]


def _what(action: str, pathway: Pathway, definition: Any) -> str:
    if action in ACTIONS:
        return ACTIONS[action]
    kind, _, what = action.partition(":")
    if kind == "event" and what:
        return f"Recorded: {pathway.label(definition, what).lower()}"
    return pathway.label(definition, action)


def _closed(item: str, pathway: Pathway, definition: Any) -> dict[str, str]:
    """``CODE@occasion:status`` as {title, code, status} in words."""
    key, _, status = item.rpartition(":")
    code = key.split("@", 1)[0]
    return {"title": pathway.label(definition, code), "code": code, "status": STATUS.get(status, status)}
