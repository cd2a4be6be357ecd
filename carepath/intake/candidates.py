"""What a coordinator does with a candidate: enroll the patient (with the rest of the enrollment),
record the offered event, or dismiss it with a reason. Each is audited on the candidate, and an
enrollment or event also on the episode.

The enrollment and the event go through the service (the episode's workflow) like any other.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from carepath.engine.intake import ReportFacts, intake_of
from carepath.errors import InvalidInput
from carepath.service import CarepathService, Conflict, Enrolled, NotFound, enrollment_digest
from db.intake import OPEN, CandidateView, candidate, close_candidate
from workflows.contracts import EventOutcome


def facts_of(view: CandidateView) -> ReportFacts:
    return ReportFacts(
        patient_ref=view.patient_ref,
        age=view.age,
        sex=view.sex,
        reported_on=view.reported_on,
        modality=view.modality,
        levels=tuple(view.levels),
    )


def _merged(draft: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``draft``: what the person sent wins, the message fills only what is absent."""
    out = copy.deepcopy(draft)
    for key, value in given.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


class Candidates:
    def __init__(self, service: CarepathService) -> None:
        self.service = service

    def get(self, candidate_id: int) -> CandidateView:
        found = candidate(self.service.engine, candidate_id)
        if found is None:
            raise NotFound(f"no candidate {candidate_id}", field="candidate_id")
        return found

    def draft(self, view: CandidateView) -> dict[str, Any]:
        """The pathway's enrollment as far as the message gave it (never a clinical answer it did not)."""
        detector = intake_of(self.service.pathway(view.pathway_id))
        return detector.enrollment_draft(facts_of(view)) if detector is not None else {}

    def _open(self, candidate_id: int, kind: str) -> CandidateView:
        view = self.get(candidate_id)
        if view.status != OPEN:
            raise Conflict("candidate", f"candidate {candidate_id} is already {view.status}")
        if view.kind != kind:
            what = "a patient to enroll" if view.kind == "enrollment" else "an event to confirm"
            raise Conflict("candidate", f"candidate {candidate_id} is {what}")
        return view

    async def enroll(self, candidate_id: int, given: dict[str, Any], actor: str) -> Enrolled:
        """Enroll the candidate's patient: ``given`` is the rest of the enrollment, the message the start."""
        view = await asyncio.to_thread(self._open, candidate_id, "enrollment")
        if not isinstance(given, dict):
            raise InvalidInput.one("body", "must be the enrollment (a JSON object)")
        ref = (given.get("patient") or {}).get("ref") if isinstance(given.get("patient"), dict) else None
        if ref is not None and ref != view.patient_ref:
            raise InvalidInput.one("patient.ref", f"must be the candidate's patient ({view.patient_ref})")
        pathway = self.service.pathway(view.pathway_id)
        enrollment = pathway.parse_enrollment(_merged(self.draft(view), given))
        held = await asyncio.to_thread(self.service.active_episode_of, view.patient_ref)
        if held is None:
            enrolled = await self.service.enroll(enrollment, actor, view.pathway_id)
        elif held.enrollment_digest == enrollment_digest(enrollment):
            # This confirmation was sent before and made the episode (its answer was lost): close it now.
            enrolled = Enrolled(
                episode_id=held.id,
                pathway=f"{held.pathway_id}.v{held.pathway_version}",
                phase=held.phase,
                identified_on=held.identified_on,
                enrolled_on=held.enrolled_on,
            )
        else:
            raise Conflict("patient.ref", f"patient already has an active episode ({held.id})")
        await asyncio.to_thread(
            close_candidate,
            self.service.engine,
            candidate_id,
            "enrolled",
            actor,
            self.service.clock(),
            None,
            enrolled.episode_id,
        )
        return enrolled

    async def confirm(self, candidate_id: int, actor: str) -> EventOutcome:
        """Record the offered event on its episode (once, however often this is sent)."""
        view = await asyncio.to_thread(self._open, candidate_id, "event")
        if view.episode_id is None or view.event is None:
            raise Conflict("candidate", f"candidate {candidate_id} offers no event")
        outcome = await self.service.record_event(
            view.episode_id, view.event, actor, idempotency_key=f"candidate-{candidate_id}"
        )
        await asyncio.to_thread(
            close_candidate,
            self.service.engine,
            candidate_id,
            "recorded",
            actor,
            self.service.clock(),
            None,
            view.episode_id,
        )
        return outcome

    def dismiss(self, candidate_id: int, reason: str, actor: str) -> CandidateView:
        reason = reason.strip()
        if not reason:
            raise InvalidInput.one("reason", "a dismissal needs a reason")
        self.get(candidate_id)
        if not close_candidate(self.service.engine, candidate_id, "dismissed", actor, self.service.clock(), reason):
            raise Conflict("candidate", f"candidate {candidate_id} is already {self.get(candidate_id).status}")
        return self.get(candidate_id)
