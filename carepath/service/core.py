"""What every part of the service shares: Temporal and the store, the clock, the pathways, the
bound on a write's wait, and the rows it acts on by their ids; and the refusals the edges translate
(NotFound, Conflict)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from sqlalchemy import Engine
from temporalio.client import Client

from carepath.engine.definition import DefinitionCore, local_date
from carepath.engine.pathway import Pathway
from carepath.engine.registry import default_pathway, pathway_for
from carepath.errors import FieldError, InvalidInput
from carepath.outbox import Bounded
from db.episodes import episode_row
from db.models import EpisodeRow, TaskRow
from db.tasks import task_row
from workflows.client import EpisodeClient

# An outage makes an update wait as long as recording retries; a request answers after this bound.
UPDATE_WAIT_SECONDS = 10.0


class NotFound(LookupError):
    """Nothing by that id; ``field`` names the parameter that held the id."""

    def __init__(self, message: str, field: str = "") -> None:
        self.field = field
        super().__init__(message)


class Conflict(Exception):
    """The request is well-formed but clashes with what is recorded; ``retry_after`` (seconds) when
    retrying later can succeed."""

    def __init__(self, field: str, message: str, retry_after: int | None = None) -> None:
        self.error = FieldError(field, message)
        self.retry_after = retry_after
        super().__init__(str(self.error))


def utcnow() -> datetime:
    return datetime.now(UTC)


class ServiceCore:
    """The state the parts share; they read it through this object, so a change (a test's clock,
    ``pathway_version``) reaches all of them."""

    def __init__(
        self,
        client: Client,
        engine: Engine,
        task_queue: str,
        clock: Callable[[], datetime] = utcnow,
        pathway_version: int | None = None,
        update_wait: float = UPDATE_WAIT_SECONDS,
        history_limit: int | None = None,
    ) -> None:
        # New episodes continue-as-new past this many history events (None: the workflow's default).
        self.history_limit = history_limit
        # New enrollments get this version of the pathway (default: the newest shipped).
        self.pathway_version = pathway_version
        self.client = client
        self.episodes = EpisodeClient(client, task_queue)
        self.engine = engine
        self.clock = clock
        self.bounded = Bounded(client, engine, update_wait)

    @property
    def update_wait(self) -> float:
        """Seconds a write waits for its answer before it is answered as pending
        (CAREPATH_UPDATE_WAIT_SECONDS)."""
        return self.bounded.wait

    @update_wait.setter
    def update_wait(self, seconds: float) -> None:
        self.bounded.wait = seconds

    @property
    def task_queue(self) -> str:
        """Where new episodes' workflows run (the episode client's)."""
        return self.episodes.task_queue

    @task_queue.setter
    def task_queue(self, queue: str) -> None:
        self.episodes.task_queue = queue

    def pathway(self, pathway_id: str | None = None) -> Pathway:
        """The pathway ``pathway_id`` (default: the shipped default); errors name ``pathway``."""
        try:
            return pathway_for(pathway_id) if pathway_id else default_pathway()
        except LookupError as exc:
            raise InvalidInput.one("pathway", str(exc)) from None

    def today(self, definition: DefinitionCore | None = None) -> date:
        """Today in the clinic's time zone of ``definition`` (default: the default pathway's)."""
        return local_date(definition or self.pathway().definition(), self.clock())

    def definition(self, field: str, pathway_id: str, version: int) -> DefinitionCore:
        """Version ``version`` of the pathway; an unknown one is refused naming ``field``."""
        try:
            return self.pathway(pathway_id).definition(version)
        except LookupError as exc:
            raise InvalidInput.one(field, str(exc)) from None

    def episode_row(self, episode_id: str) -> EpisodeRow:
        row = episode_row(self.engine, episode_id)
        if row is None:
            raise NotFound(f"no episode {episode_id}", field="episode_id")
        return row

    def task_row(self, task_id: int) -> TaskRow:
        row = task_row(self.engine, task_id)
        if row is None:
            raise NotFound(f"no task {task_id}", field="task_id")
        return row
