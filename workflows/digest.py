"""The daily digest per role, run by a Temporal Schedule at 08:00 clinic time (carepath/schedules.py)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.followup import Digest, DigestRequest, FollowUp
    from workflows.checkin import RETRY


@workflow.defn(name="Digest")
class DigestWorkflow:
    @workflow.run
    async def run(self) -> list[Digest]:
        return await workflow.execute_activity_method(
            FollowUp.send_digests,
            DigestRequest(now=workflow.now()),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RETRY,
        )
