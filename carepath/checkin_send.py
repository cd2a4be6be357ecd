"""A coordinator sends a patient a check-in link now (the patient asked, or a link expired).

The check-in, its patient message and the audit entry are written in one transaction
(``db.checkins.send_now``); a small workflow beside the episode then delivers the message
at once, which also starts the link's reminder. If Temporal is unreachable at that moment the
message waits in the outbox and the daily digest's sweep delivers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from carepath.service import CarepathService
from db import checkins as checkin
from workflows.checkin import CheckInSentWorkflow

log = logging.getLogger("carepath.checkin")


def public_url(request: Any) -> str:
    """The address links in messages point at: CAREPATH_PUBLIC_URL when set, else this server's own."""
    return getattr(request.app.state, "public_url", None) or str(request.base_url).rstrip("/")


async def send_checkin(service: CarepathService, episode_id: str, actor: str, public_url: str) -> checkin.Sent:
    now = service.clock()
    sent = await asyncio.to_thread(
        checkin.send_now, service.engine, episode_id, now, service.today(), public_url, actor
    )
    try:
        with contextlib.suppress(WorkflowAlreadyStartedError):
            await service.client.start_workflow(
                CheckInSentWorkflow.run,
                episode_id,
                id=f"checkin-sent-{episode_id}-{sent.occasion}",
                task_queue=service.task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
    except RPCError as exc:  # recorded and in the outbox: delivered by the next sweep
        log.warning("check-in for %s waits in the outbox: %s", episode_id, exc.message)
    return sent
