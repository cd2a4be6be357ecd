"""What people read: clinician messages (who, what, when due, a link) and patient messages in
plain words. Patient messages never carry clinical shorthand, codes or links to clinician pages."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from carepath.engine.presentation import CheckIn

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


def patient_checkin_message(plan: CheckIn, url: str, expires_on: date, reminder: bool) -> tuple[str, str]:
    """A check-in link's message (or its reminder) in the pathway's words, valid until ``expires_on``."""
    last_day = (expires_on - timedelta(days=1)).isoformat()
    subject = plan.reminder_subject if reminder else plan.subject
    opening = plan.reminder_opening if reminder else plan.opening
    body = (
        f"{opening} Please answer a few short questions here:\n{url}\n"
        f"The link works once, until {last_day}. If you prefer, call your care team instead. {plan.safety}"
    )
    return subject, body


def patient_outbox(episode_id: str, code: str, occasion: str, subject: str, body: str, at: datetime) -> dict[str, Any]:
    return {
        "dedupe_key": f"{episode_id}:{code}@{occasion}",
        "episode_id": episode_id,
        "code": code,
        "occasion": occasion,
        "recipient_role": "patient",
        "subject": subject,
        "body": body,
        "created_at": at,
        "status": "pending",
        "attempts": 0,
    }
