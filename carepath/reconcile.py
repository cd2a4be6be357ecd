"""The enrollment sweep: releases reservations that no workflow backs (``CarepathService.reconcile_enrollments``).

``carepath api`` and ``carepath dev`` run it every ``CAREPATH_RECONCILE_EVERY_SECONDS`` (60 s);
``carepath reconcile-enrollments`` runs it once. A reservation younger than
``CAREPATH_RESERVATION_TIMEOUT_SECONDS`` (120 s) is left alone: its request may still be about to
start the workflow.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from carepath.service import CarepathService
from carepath.settings import Settings

log = logging.getLogger(__name__)


async def reconcile_periodically(service: CarepathService, every: float, older_than: timedelta) -> None:
    """Sweep now and every ``every`` seconds until cancelled; a failed sweep is retried next time."""
    while True:
        try:
            report = await service.reconcile_enrollments(older_than)
        except Exception:  # Temporal or the database unreachable: nothing is lost by waiting
            log.warning("enrollment sweep failed; next try in %.0f s", every, exc_info=True)
        else:
            for episode_id in report.released:
                log.warning("released enrollment reservation %s: no workflow backed it", episode_id)
        await asyncio.sleep(every)


def sweep_schedule(settings: Settings) -> tuple[float, timedelta]:
    return settings.reconcile_every_seconds, timedelta(seconds=settings.reservation_timeout_seconds)
