"""Deliver the notification outbox to its channels: at least once, recorded as delivered exactly once.

The outbox row is written with its task (activities/recording.py). This activity sends every
undelivered row of an episode, marking each delivered with a conditional update right after the
sink accepts it; a crash in between re-sends it (receivers dedupe on the delivery id), and the
conditional update means it is recorded delivered only once. A row whose delivery failed is
``failed`` with its ``last_error`` (visible at ``GET /notifications?status=failed``) and is
retried with the activity's backoff until the channel takes it.

Channels: clinician messages go to the file, the signed webhook or e-mail (SMTP, addresses per
role); patient messages go to their own channel (the webhook, where an SMS gateway sits, or the
file): the enrollment holds no patient e-mail address.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Engine
from temporalio import activity

from carepath.messages import DEFAULT_PUBLIC_URL, clinician_text, episode_link
from db import notifications as outbox
from db.models import NotificationRow

PATIENT = "patient"
# Bodies that carry a check-in token: scrubbed once delivered (only the token's hash is kept).
LINK_CODES = ("CHECKIN", "CHECKIN_REMINDER")
SCRUBBED = "(the check-in link was sent; it is not kept)"

SIGNATURE_HEADER = "X-Carepath-Signature"
DELIVERY_HEADER = "X-Carepath-Delivery"


class NotificationSink(Protocol):
    def deliver(self, message: dict[str, Any]) -> None:
        """Hand ``message`` over or raise; raising makes the activity retry later."""


class FileSink:
    """Appends one JSON line per notification (the default: a log file an operator can tail)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def deliver(self, message: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(message, sort_keys=True) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSink:
    """POSTs JSON with an HMAC-SHA256 signature of the body, so receivers can trust it."""

    def __init__(self, url: str, secret: str, timeout: float = 10.0) -> None:
        if not secret:
            raise ValueError("a webhook sink needs a signing secret (CAREPATH_WEBHOOK_SECRET)")
        self.url = url
        self.secret = secret
        self.timeout = timeout

    def deliver(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, sort_keys=True).encode()
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(self.secret, body),
                DELIVERY_HEADER: message["delivery_id"],
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                if not 200 <= response.status < 300:
                    raise RuntimeError(f"webhook answered {response.status}")
        except urllib.error.URLError as exc:
            raise RuntimeError(f"webhook delivery failed: {exc}") from exc


@dataclass
class SmtpSink:
    """E-mail over SMTP (stdlib): one message per notification to the addresses of its role.

    The Message-ID is derived from the delivery id, so a re-sent message (at least once) is
    recognisable as the same one by mail clients and archives.
    """

    host: str
    port: int = 587
    sender: str = "carepath@localhost"
    recipients: dict[str, list[str]] = field(default_factory=dict)
    user: str = ""
    password: str = ""
    starttls: bool = True
    timeout: float = 10.0

    def deliver(self, message: dict[str, Any]) -> None:
        to = self.recipients.get(message["recipient_role"], [])
        if not to:
            raise RuntimeError(f"no e-mail address for role {message['recipient_role']!r} (CAREPATH_SMTP_TO_*)")
        mail = EmailMessage()
        mail["From"] = self.sender
        mail["To"] = ", ".join(to)
        mail["Subject"] = message["subject"]
        domain = self.sender.rpartition("@")[2] or "carepath"
        mail["Message-ID"] = make_msgid(
            idstring=hashlib.sha256(message["delivery_id"].encode()).hexdigest()[:32], domain=domain
        )
        mail[DELIVERY_HEADER] = message["delivery_id"]
        mail.set_content(clinician_text(message))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            raise RuntimeError(f"e-mail delivery failed: {exc}") from exc


@dataclass
class Channels:
    """Routes each message by whom it is for: patients have their own channel."""

    clinician: NotificationSink
    patient: NotificationSink

    def deliver(self, message: dict[str, Any]) -> None:
        (self.patient if message["recipient_role"] == PATIENT else self.clinician).deliver(message)


def message_of(
    row: NotificationRow, patient_ref: str | None = None, due_on: Any = None, public_url: str = DEFAULT_PUBLIC_URL
) -> dict[str, Any]:
    """The message as channels get it: who it is about, what, when due, and (clinicians) a link."""
    message = {
        "delivery_id": row.dedupe_key,
        "episode_id": row.episode_id,
        "code": row.code,
        "occasion": row.occasion,
        "recipient_role": row.recipient_role,
        "subject": row.subject,
        "body": row.body,
        "created_at": row.created_at.isoformat(),
        "patient_ref": patient_ref,  # the clinic's reference (the SMS gateway looks the patient up by it)
        "due_on": due_on.isoformat() if due_on else None,
    }
    if row.episode_id and row.recipient_role != PATIENT:
        message["link"] = episode_link(public_url, row.episode_id)
    return message


class NotificationDispatcher:
    def __init__(
        self,
        engine: Engine,
        sink: NotificationSink,
        public_url: str = DEFAULT_PUBLIC_URL,
        executor: Executor | None = None,
        before_delivery: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.public_url = public_url
        self.executor = executor
        # Runs first in each episode delivery (starting check-in reminders): follow-up beside the
        # episode workflow, which calls this activity after every recording that notifies.
        self.before_delivery = before_delivery

    def deliver_where(self, condition: ColumnElement[bool]) -> int:
        """Deliver the undelivered rows matching ``condition``; returns how many were delivered now."""
        pending = outbox.undelivered(self.engine, condition)
        messages = [(row.id, message_of(row, ref, due, self.public_url)) for row, ref, due in pending]
        if not messages:
            return 0
        # Two transactions per batch, not two per message: on SQLite every write transaction
        # queues behind the others, and this ran once per raised task.
        outbox.count_attempt(self.engine, [row_id for row_id, _ in messages])
        sent: list[int] = []
        try:
            for row_id, message in messages:
                try:
                    self.sink.deliver(message)
                except Exception as exc:
                    outbox.mark_failed(self.engine, row_id, f"{type(exc).__name__}: {exc}")  # seen while it retries
                    raise
                sent.append(row_id)
        finally:
            # Record what the sink accepted even if a later message failed (the retry resends
            # only the rest); the status condition makes a repeat of this a no-op.
            delivered = outbox.mark_delivered(self.engine, sent, LINK_CODES, SCRUBBED)
        return delivered

    def deliver_episode(self, episode_id: str) -> int:
        return self.deliver_where(outbox.of_episode(episode_id))

    @activity.defn(name="deliver_notifications")
    async def deliver_notifications(self, episode_id: str) -> int:
        """Deliver the episode's undelivered notifications; returns how many were delivered now."""
        if self.before_delivery is not None:
            await self.before_delivery(episode_id)
        # The database and the sinks block: they run on the activity threads, not the event loop.
        return await asyncio.get_running_loop().run_in_executor(self.executor, self.deliver_episode, episode_id)
