"""What coordinators and physicians do, independent of HTTP or the terminal.

Every write goes through the episode's workflow (start, updates), so the edges and the workflow
never disagree; reads come from the store the workflow's activities keep. The service is three
parts, each with its own reason to change, over what they share (``core``):

- ``enrollment``: the patient's one active episode reserved, its workflow started, its baseline
  awaited, and reservations no workflow backs released;
- ``commands``: events under Idempotency-Key claims and the outbox, withdrawals, migrations and
  task closings, each answered within the write's bound;
- ``reads``: the episode, its audit trail, tasks and the worklist, and what comes next.

``CarepathService`` composes them for the edges: one object with each part's methods.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client

from carepath.outbox import Unavailable
from carepath.service.commands import Commands, Migrated
from carepath.service.core import Conflict, NotFound, ServiceCore
from carepath.service.enrollment import Enrolled, Enrollment, Reconciled, enrollment_digest
from carepath.service.reads import AuditEntry, EpisodeDetail, EpisodeWithUpcoming, Reads
from carepath.settings import Settings

__all__ = [
    "AuditEntry",
    "CarepathService",
    "Conflict",
    "Enrolled",
    "EpisodeDetail",
    "EpisodeWithUpcoming",
    "Migrated",
    "NotFound",
    "Reconciled",
    "Unavailable",
    "enrollment_digest",
]


class CarepathService(ServiceCore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Takes ``ServiceCore``'s arguments (client, engine, task queue, clock, pathway version,
        update wait, history limit) and composes the parts over it."""
        super().__init__(*args, **kwargs)
        self.enrollment = Enrollment(self)
        self.reads = Reads(self)
        self.commands = Commands(self, self.reads.task)
        self.outbox = self.commands.outbox
        # The parts' methods, as the edges call them.
        self.enroll = self.enrollment.enroll
        self.active_episode_of = self.enrollment.active_episode_of
        self.reconcile_enrollments = self.enrollment.reconcile_enrollments
        self.record_event = self.commands.record_event
        self.drain_outbox = self.commands.drain_outbox
        self.withdraw = self.commands.withdraw
        self.migrate = self.commands.migrate
        self.close_task = self.commands.close_task
        self.episode = self.reads.episode
        self.episode_with_upcoming = self.reads.episode_with_upcoming
        self.episode_pathway = self.reads.episode_pathway
        self.workflow_state = self.reads.workflow_state
        self.audit = self.reads.audit
        self.task = self.reads.task
        self.worklist = self.reads.worklist

    @classmethod
    def from_settings(cls, client: Client, engine: Engine, settings: Settings) -> CarepathService:
        """The service as ``carepath api`` and ``carepath dev`` configure it."""
        return cls(
            client,
            engine,
            settings.task_queue,
            pathway_version=settings.pathway_version,
            update_wait=settings.update_wait_seconds,
            history_limit=settings.history_limit,
        )
