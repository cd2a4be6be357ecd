"""What people read: clinician messages (who, what, when due, a link) and patient messages in
plain words. Patient messages never carry clinical shorthand, codes or links to clinician pages."""

from __future__ import annotations

from datetime import date
from typing import Any

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"

PLAIN_REQUEST = "Your care team has a request for you. Call them if anything is unclear."


def patient_words(words: tuple[str, str] | None, title: str) -> tuple[str, str]:
    """A patient task's message: the pathway's words for it (``Pathway.patient_message``), else
    its title and a plain request (the definition's titles are written for clinicians)."""
    return words if words is not None else (title, PLAIN_REQUEST)


def episode_link(public_url: str, episode_id: str) -> str:
    return f"{public_url.rstrip('/')}/ui/episodes/{episode_id}"


def clinician_text(message: dict[str, Any]) -> str:
    """The plain-text body of a clinician message: who, what, when due, where to act."""
    lines = [message["subject"]]
    if message.get("patient_ref"):
        lines.append(f"Patient: {message['patient_ref']}")
    if message.get("due_on"):
        lines.append(f"Due: {message['due_on']}")
    if message.get("body"):
        lines += ["", message["body"]]
    if message.get("link"):
        lines += ["", f"Open the episode: {message['link']}"]
    return "\n".join(lines) + "\n"


def due_words(due_on: date | None) -> str:
    return f", due {due_on.isoformat()}" if due_on else ""
