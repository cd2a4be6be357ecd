"""Commands to a running episode, each answered within the write's bound: events (claimed under
their Idempotency-Key, or one of the server's own, and kept in the outbox until they land),
withdrawals, migrations and task closings. A task of an episode whose workflow has ended is
closed in the store directly, audited (there is no workflow left to ask)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from carepath.engine.inputs import EventCore
from carepath.engine.items import TaskKey
from carepath.engine.registry import default_pathway
from carepath.errors import InvalidInput
from carepath.outbox import EventOutbox
from carepath.service.core import Conflict, ServiceCore
from db import idempotency
from db.queries import TaskView
from db.tasks import TaskClosed, close_after_workflow
from workflows.client import Attempts, EpisodeClosed
from workflows.contracts import EventOutcome, TaskClosing

# Unkeyed events get a claim too (the outbox), under a key no client can send (it has a space).
SERVER_KEY = "server "
EVENT_PENDING = (
    "the event is not recorded yet ({cause}); it is kept and sent until it is: "
    "retry with the same Idempotency-Key for its outcome"
)
EVENT_PENDING_UNKEYED = (
    "the event is not recorded yet ({cause}); it is kept and sent until it is: "
    "do not send it again (without an Idempotency-Key that would record it twice)"
)
NOT_SENT = (
    "{what} is not recorded ({{cause}}); this server does not send it again: reload and retry "
    "(if it was recorded meanwhile, the retry is refused as already done)"
)
# A request that finds its Idempotency-Key in progress waits this long (5 s) for the first answer;
# a claim in progress for longer than KEY_STALE_AFTER is resumed (its request died unanswered).
KEY_WAIT_STEP, KEY_WAIT_STEPS = 0.05, 100
KEY_STALE_AFTER = timedelta(seconds=30)
# The draft's key is a string; printable ASCII up to 64 characters keeps it a safe column value.
_KEY = re.compile(r"[\x20-\x7e]{1,64}")


class Migrated(BaseModel):
    """What a migration answers: no patient data, since admins migrate too."""

    episode_id: str
    pathway: str
    status: str


def _checked_key(key: str) -> str:
    if not _KEY.fullmatch(key) or key.startswith(SERVER_KEY):
        raise InvalidInput.one("Idempotency-Key", "must be 1 to 64 printable ASCII characters")
    return key


class Commands:
    def __init__(self, core: ServiceCore, task: Callable[[int], TaskView]) -> None:
        self.core = core
        self.task = task  # a task as the worklist shows it: what closing one answers
        self._pathway_ids: dict[str, str] = {}  # episode id -> its pathway id (see _pathway_id)
        self.outbox = EventOutbox(core.engine, core.episodes, lambda episode_id: core.episode_row(episode_id).phase)

    async def record_event(
        self, episode_id: str, event: EventCore | dict[str, Any], actor: str, idempotency_key: str | None = None
    ) -> EventOutcome:
        """Claim the event (its key, or one of the server's own), keeping it in the outbox, then
        send it: answered within the bound, else Unavailable while it is sent on until it lands, once."""
        pathway_id = self._pathway_ids.get(episode_id) or await asyncio.to_thread(self._pathway_id, episode_id)
        event = self.core.pathway(pathway_id).parse_event(event)
        keyed = idempotency_key is not None
        key = _checked_key(idempotency_key) if idempotency_key is not None else SERVER_KEY + uuid.uuid4().hex
        payload = event.model_dump(mode="json")
        held = await self._claim_key(episode_id, key, idempotency.fingerprint(payload), payload, actor)
        if held.response is not None:
            return EventOutcome.model_validate(held.response)
        attempts = Attempts()
        return await self.core.bounded.run(
            self.outbox.send(episode_id, key, held.event_id, payload, actor, attempts),
            attempts,
            EVENT_PENDING if keyed else EVENT_PENDING_UNKEYED,
        )

    async def drain_outbox(self, older_than: timedelta = timedelta(seconds=30)) -> int:
        """Send the events still in the outbox that no request of this process is sending."""
        return await self.outbox.drain(self.core.clock(), older_than)

    async def _claim_key(
        self, episode_id: str, key: str, print_: str, request: dict[str, Any], actor: str
    ) -> idempotency.Claim:
        """The claim to act on: this request's own, a finished one (replay), or a stale one (resume)."""
        engine = self.core.engine
        for _ in range(KEY_WAIT_STEPS):
            now = self.core.clock()
            held = await asyncio.to_thread(idempotency.claim, engine, episode_id, key, print_, now, request, actor)
            if held.fingerprint != print_:
                raise InvalidInput.one(
                    "Idempotency-Key", "was already used with a different request body; use a new key"
                )
            if held.mine or held.status == idempotency.DONE or now - held.created_at > KEY_STALE_AFTER:
                return held
            await asyncio.sleep(KEY_WAIT_STEP)  # the first request with this key is still running
        raise Conflict("Idempotency-Key", "a request with this key is still in progress", retry_after=1)

    async def withdraw(self, episode_id: str, reason: str, text: str | None, actor: str) -> EventOutcome:
        episode = await asyncio.to_thread(self.core.episode_row, episode_id)
        today = self.core.today(self.core.definition("pathway_version", episode.pathway_id, episode.pathway_version))
        event = {"type": "withdraw", "occurred_on": today.isoformat(), "reason": reason}
        return await self.record_event(episode_id, event if text is None else event | {"text": text}, actor)

    async def migrate(self, episode_id: str, version: int, reason: str, actor: str) -> Migrated:
        core = self.core
        # The version is checked before the episode is looked up, so that refusing a bad request
        # does not tell an admin (who reads no patient data) whether the episode exists.
        core.definition("version", default_pathway().id, version)
        episode = await asyncio.to_thread(core.episode_row, episode_id)
        target = core.definition("version", episode.pathway_id, version)
        try:
            attempts = Attempts()
            await core.bounded.run(
                core.episodes.migrate(episode_id, target, reason, actor, attempts),
                attempts,
                NOT_SENT.format(what="the migration"),
                "migrate",
                keep=lambda cause: False,
            )
        except EpisodeClosed:
            raise InvalidInput.one("episode", f"episode is {episode.phase}; nothing to migrate") from None
        row = await asyncio.to_thread(core.episode_row, episode_id)
        return Migrated(episode_id=row.id, pathway=f"{row.pathway_id}.v{row.pathway_version}", status=row.status)

    def _pathway_id(self, episode_id: str) -> str:
        """The episode's pathway id, read once per episode (it never changes): a write does not
        read the store just to learn which pathway parses its event. NotFound for an unknown one."""
        pathway_id = self.core.episode_row(episode_id).pathway_id
        if len(self._pathway_ids) >= 100_000:  # bounded: forget them all, they are read again
            self._pathway_ids.clear()
        self._pathway_ids[episode_id] = pathway_id
        return pathway_id

    async def close_task(self, task_id: int, status: str, reason: str, actor: str) -> TaskView:
        core = self.core
        task = await asyncio.to_thread(core.task_row, task_id)
        if task.status != "open":
            raise Conflict("task", f"task {task_id} is already {task.status}")
        closing = TaskClosing(code=task.code, milestone=task.occasion, status=status, reason=reason, actor=actor)
        try:
            attempts = Attempts()
            key = TaskKey(task.code, task.occasion)
            await core.bounded.run(
                core.episodes.close_task(task.episode_id, key, status, reason, actor, attempts),
                attempts,
                NOT_SENT.format(what="the task's closing"),
                "close_task",
                keep=lambda cause: False,
            )
        except EpisodeClosed:
            try:
                await asyncio.to_thread(self._close_after_workflow, task_id, closing)
            except TaskClosed as exc:
                raise Conflict("task", str(exc)) from None
        return await asyncio.to_thread(self.task, task_id)

    def _close_after_workflow(self, task_id: int, closing: TaskClosing) -> None:
        now = self.core.clock()
        close_after_workflow(self.core.engine, task_id, closing.status, closing.reason, closing.actor, now)
