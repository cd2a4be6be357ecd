"""Deliver the notification outbox to a sink: at least once, recorded as delivered exactly once.

The outbox row is written with its task (activities/recording.py). This activity sends every
pending row of an episode, marking each delivered with a conditional update right after the
sink accepts it; a crash in between re-sends it (receivers dedupe on the delivery id), and the
conditional update means it is recorded delivered only once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session
from temporalio import activity

from db.models import NotificationRow

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


def message_of(row: NotificationRow) -> dict[str, Any]:
    return {
        "delivery_id": row.dedupe_key,
        "episode_id": row.episode_id,
        "code": row.code,
        "occasion": row.occasion,
        "recipient_role": row.recipient_role,
        "subject": row.subject,
        "body": row.body,
        "created_at": row.created_at.isoformat(),
    }


class NotificationDispatcher:
    def __init__(self, engine: Engine, sink: NotificationSink) -> None:
        self.engine = engine
        self.sink = sink

    def _mark_delivered(self, ids: list[int]) -> int:
        if not ids:
            return 0
        with Session(self.engine) as session, session.begin():
            marked = session.execute(
                update(NotificationRow)
                .where(NotificationRow.id.in_(ids), NotificationRow.status == "pending")
                .values(status="delivered", delivered_at=datetime.now(UTC))
            )
            return marked.rowcount

    @activity.defn(name="deliver_notifications")
    def deliver_notifications(self, episode_id: str) -> int:
        """Deliver the episode's pending notifications; returns how many were delivered now."""
        with Session(self.engine) as session:
            pending = session.scalars(
                select(NotificationRow)
                .where(NotificationRow.episode_id == episode_id, NotificationRow.status == "pending")
                .order_by(NotificationRow.id)
            ).all()
            messages = [(row.id, message_of(row)) for row in pending]
        if not messages:
            return 0
        ids = [row_id for row_id, _ in messages]
        # Two transactions per batch, not two per message: on SQLite every write transaction
        # queues behind the others, and this ran once per raised task.
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(NotificationRow).where(NotificationRow.id.in_(ids)).values(attempts=NotificationRow.attempts + 1)
            )
        sent: list[int] = []
        try:
            for row_id, message in messages:
                self.sink.deliver(message)
                sent.append(row_id)
        finally:
            # Record what the sink accepted even if a later message failed (the retry resends
            # only the rest); the status condition makes a repeat of this a no-op.
            delivered = self._mark_delivered(sent)
        return delivered
