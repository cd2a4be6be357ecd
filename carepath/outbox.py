"""Writes that outlive their request: bounded waits that name why, and the event outbox.

A request waits at most its bound (CAREPATH_UPDATE_WAIT_SECONDS) for the workflow's answer. An
event is kept in its Idempotency-Key claim (db/idempotency.py) before it is sent, and sent until
the workflow answers: by the request (detached past the bound) and, should that process die, by
the API's sweep (``EventOutbox.drain``). The workflow remembers the event ids it recorded across
continue-as-new, so sending one again applies it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client

from carepath.errors import FieldError, InvalidInput
from carepath.observability import observe_update
from db import idempotency
from db.health import check_database
from workflows.client import UNREACHABLE, Attempts, EpisodeClient, EpisodeClosed
from workflows.contracts import EventOutcome

log = logging.getLogger("carepath.outbox")

RETRY_AFTER_SECONDS = 5
# The share of the bound spent asking Temporal and the database why nothing answered yet.
PROBE_SECONDS = 1.0
# Events this process sends to one episode at once. One: they land in the order they were
# accepted (a note kept during an outage lands before the withdrawal accepted after it; with
# several in flight the withdrawal could land first and the note be refused), and the rest wait
# here instead of passing Temporal's limit of 10 in flight and being refused and sent again
# (measured: those retries ate the server's time, 3.4 notes/s; one lane 19.7, eight lanes 34).
SENDS_PER_EPISODE = 1
DATABASE_DOWN = "the database is unreachable; recording waits for it"
NO_ANSWER_YET = "no worker has answered yet (the workers are busy or not running)"


class Unavailable(Exception):
    """No answer within the wait bound: the message says what happens next, ``retry_after`` (seconds)
    when asking again makes sense."""

    def __init__(self, field: str, message: str, retry_after: int = RETRY_AFTER_SECONDS, cause: str = "") -> None:
        self.error = FieldError(field, message)
        self.cause = cause
        self.retry_after = retry_after
        super().__init__(str(self.error))


def _forget(pending: set[asyncio.Future[Any]], what: str, began: float) -> Callable[[asyncio.Future[Any]], None]:
    def done(task: asyncio.Future[Any]) -> None:
        pending.discard(task)
        failed = task.cancelled() or task.exception() is not None
        observe_update(what, time.perf_counter() - began, "error" if failed else "ok")

    return done


class Bounded:
    """Runs writes with a bound on the wait; past it, says why in words and what happens next."""

    def __init__(self, client: Client, engine: Engine, wait: float) -> None:
        self.client = client
        self.engine = engine
        self.wait = wait
        self._detached: set[asyncio.Future[Any]] = set()  # writes that outlived their request

    async def run(
        self,
        work: Awaitable[Any],
        attempts: Attempts,
        pending: str | Callable[[str], str],
        what: str = "event",
        keep: Callable[[str], bool] = lambda cause: True,
    ) -> Any:
        """``work``'s result within the bound, else ``Unavailable`` saying ``pending`` (its ``{cause}``
        filled in). Past the bound the write goes on detached if ``keep(cause)``, else it is
        cancelled (never sent again)."""
        task = asyncio.ensure_future(work)
        self._detached.add(task)
        task.add_done_callback(_forget(self._detached, what, time.perf_counter()))
        # The cause is looked for in the bound's last moments, while the answer may still come.
        probe = min(PROBE_SECONDS, self.wait / 4)
        done, _ = await asyncio.wait({task}, timeout=self.wait - probe)
        if not done:
            looking = asyncio.ensure_future(self.cause(attempts, probe))
            await asyncio.wait({task}, timeout=probe)
            if task.done():
                looking.cancel()
                return task.result()
            cause = await looking
            if not task.done():
                if not keep(cause):
                    task.cancel()
                message = pending(cause) if callable(pending) else pending.format(cause=cause)
                raise Unavailable("", message, cause=cause)
        return task.result()

    async def cause(self, attempts: Attempts, within: float) -> str:
        """Why no answer came: the last passing refusal seen, else what a quick look finds down."""
        if attempts.cause is not None:
            return attempts.cause
        temporal, database = await asyncio.gather(self._temporal_up(within), self._database_up(within))
        if not temporal:
            return UNREACHABLE
        if not database:
            return DATABASE_DOWN
        return NO_ANSWER_YET

    async def _temporal_up(self, within: float) -> bool:
        try:
            return await asyncio.wait_for(self.client.service_client.check_health(), within)
        except Exception:  # any failure to answer is the answer
            return False

    async def _database_up(self, within: float) -> bool:
        try:
            await asyncio.wait_for(asyncio.to_thread(check_database, self.engine), within)
        except Exception:
            return False
        return True


class EventOutbox:
    """Sends claimed events until their workflow answers, then completes the claim."""

    def __init__(self, engine: Engine, episodes: EpisodeClient, phase_of: Callable[[str], str]) -> None:
        self.engine = engine
        self.episodes = episodes
        self.phase_of = phase_of  # the episode's recorded phase, for the refusal of a closed one
        self._sending: set[tuple[str, str]] = set()  # (episode, key) being sent by this process
        self._lanes: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}  # episode -> (lane, its users)

    @contextlib.asynccontextmanager
    async def _lane(self, episode_id: str) -> AsyncIterator[None]:
        """At most ``SENDS_PER_EPISODE`` sends to one episode at once, first come first sent (the
        semaphore wakes its waiters in order); forgotten when unused."""
        lane, users = self._lanes.setdefault(episode_id, (asyncio.Semaphore(SENDS_PER_EPISODE), [0]))
        users[0] += 1
        try:
            async with lane:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._lanes[episode_id]

    async def send(
        self, episode_id: str, key: str, event_id: str, event: dict[str, Any], actor: str, attempts: Attempts
    ) -> EventOutcome:
        self._sending.add((episode_id, key))
        try:
            async with self._lane(episode_id):
                outcome = await self.episodes.record_event(episode_id, event, event_id, actor, attempts)
        except EpisodeClosed:
            await asyncio.to_thread(idempotency.release, self.engine, episode_id, key)
            phase = await asyncio.to_thread(self.phase_of, episode_id)
            raise InvalidInput.one("episode", f"episode is {phase}; no further events are accepted") from None
        except InvalidInput:
            await asyncio.to_thread(idempotency.release, self.engine, episode_id, key)  # refused: records nothing
            raise
        finally:
            self._sending.discard((episode_id, key))
        # Should this fail (database down), the claim stays in the outbox: sent again, the
        # workflow answers the outcome it remembers.
        await asyncio.to_thread(idempotency.complete, self.engine, episode_id, key, outcome.model_dump(mode="json"))
        return outcome

    def sending(self, episode_id: str, key: str) -> bool:
        return (episode_id, key) in self._sending

    async def drain(self, now: datetime, older_than: timedelta) -> int:
        """Send every claimed event older than ``older_than`` that no request of this process is
        sending (its process died, or its sending failed for good); returns how many landed."""
        entries = await asyncio.to_thread(idempotency.pending, self.engine, now - older_than)
        landed = 0
        for entry in entries:
            if self.sending(entry.episode_id, entry.key):
                continue
            attempts = Attempts()
            try:
                await self.send(entry.episode_id, entry.key, entry.event_id, entry.request, entry.actor, attempts)
            except InvalidInput as exc:
                log.warning("outbox: event %s of episode %s refused: %s", entry.key, entry.episode_id, exc)
                continue
            landed += 1
        return landed
