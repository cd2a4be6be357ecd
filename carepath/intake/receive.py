"""From a received message to stored rows: what the pathways' detectors find in it, and the writer
that commits messages in small batches before anyone is told they are received.

Nothing here enrolls anyone or records an event: a finding becomes a candidate that a person
confirms or dismisses (``carepath.intake.candidates``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from carepath.engine.intake import Finding, intake_of
from carepath.engine.registry import pathways
from carepath.intake.message import Received, age_on
from db.intake import (
    ACCEPTED,
    REFUSED,
    ActiveEpisode,
    CandidatePlan,
    Demographics,
    IncomingMessage,
    Planner,
    Stored,
    store_messages,
)

log = logging.getLogger("carepath.intake")
REPORT_KINDS = {"ORU^R01", "DiagnosticReport", "Condition"}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Detected:
    """What one pathway's detector found in a message."""

    pathway_id: str
    findings: list[Finding]


def detect(received: Received) -> list[Detected]:
    """Every registered pathway's findings in the message's words and codes."""
    if received.refusal is not None or received.kind not in REPORT_KINDS:
        return []
    found = []
    for pathway in pathways():
        detector = intake_of(pathway)
        if detector is None:
            continue
        findings = detector.find_in_text(received.text) if received.text else []
        findings += detector.find_in_codes(received.codings, received.coding_text) if received.codings else []
        if findings:
            found.append(Detected(pathway.id, findings))
    return found


def _demographics(received: Received) -> Demographics:
    patient = received.patient
    if patient is None:
        return Demographics()
    day = received.reported_on or received.admitted_on or _utcnow().date()
    return Demographics(birth_date=patient.birth_date, age=age_on(patient.birth_date, day), sex=patient.sex)


def _merged_levels(findings: list[Finding], attribute: str) -> list[str]:
    out: list[str] = []
    for finding in findings:
        out += [level for level in getattr(finding, attribute) if level not in out]
    return out


def _enrollment_plan(detected: Detected, received: Received, demographics: Demographics) -> CandidatePlan:
    first = detected.findings[0]
    return CandidatePlan(
        kind="enrollment",
        pathway_id=detected.pathway_id,
        subject="enroll",
        sentence=first.sentence,
        spans=[list(span) for span in first.spans],
        levels=_merged_levels(detected.findings, "levels"),
        noted=_merged_levels(detected.findings, "noted"),
        demographics=demographics,
        reported_on=received.reported_on,
        modality=received.modality,
    )


def _admission_plans(
    received: Received, episodes: list[ActiveEpisode], demographics: Demographics
) -> list[CandidatePlan]:
    """An admission of a patient with an active episode: offered as that pathway's event."""
    if received.admitted_on is None:
        return []
    plans = []
    by_id = {pathway.id: pathway for pathway in pathways()}
    for episode in episodes:
        detector = intake_of(by_id.get(episode.pathway_id))
        event = detector.admission_event(received.admitted_on) if detector is not None else None
        if event is None:
            continue
        plans.append(
            CandidatePlan(
                kind="event",
                pathway_id=episode.pathway_id,
                subject=f"{event['type']}:{received.admitted_on.isoformat()}",
                sentence=f"Admitted to hospital on {received.admitted_on.isoformat()} ({received.kind})",
                event=event,
                episode_id=episode.id,
                demographics=demographics,
                reported_on=received.admitted_on,
            )
        )
    return plans


def prepare(received: Received, now: datetime) -> tuple[IncomingMessage, Planner]:
    """The message's row, and what it does once the store has looked up the patient's episodes."""
    detected = detect(received)
    demographics = _demographics(received)
    patient = received.patient
    message = IncomingMessage(
        dedupe_key=received.dedupe_key,
        source=received.source,
        kind=received.kind,
        control_id=received.control_id,
        sender=received.sender,
        patient_ref=patient.ref if patient else None,
        status=REFUSED if received.refusal else ACCEPTED,
        error=str(received.refusal) if received.refusal else None,
        size=len(received.body),
        body=received.body,
        received_at=now,
        findings=[f.as_dict() | {"pathway": d.pathway_id} for d in detected for f in d.findings],
    )

    def plan(episodes: list[ActiveEpisode]) -> tuple[list[CandidatePlan], Demographics | None]:
        plans = [_enrollment_plan(d, received, demographics) for d in detected]
        plans += _admission_plans(received, episodes, demographics)
        return plans, demographics if received.kind.startswith("ADT") else None

    return message, plan


def store(engine: Engine, received: list[Received], clock: Callable[[], datetime] = _utcnow) -> list[Stored]:
    """Store ``received`` in one transaction; if another writer raced us to a candidate, one by one."""
    now = clock()
    batch = [prepare(r, now) for r in received]
    try:
        return store_messages(engine, batch, now)
    except IntegrityError:
        if len(batch) == 1:  # the other writer has committed: this time its rows are seen
            return store_messages(engine, batch, now)
        return [store_messages(engine, [item], now)[0] for item in batch]


class BatchWriter:
    """Reads and commits what concurrent connections receive in shared transactions (one commit for
    many messages), and answers each caller once its message is committed.

    Each job is a function that reads one message (parsing it); jobs run in the writer's thread, so
    the event loop only moves bytes while a batch is parsed and stored, and what arrives meanwhile
    makes the next batch. A failed commit fails every message of its batch: their senders get no
    ACK and send again.
    """

    def __init__(self, engine: Engine, max_batch: int = 64, clock: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self.clock = clock
        self._queue: asyncio.Queue[tuple[Callable[[], Received], asyncio.Future[tuple[Received, Stored]]]]
        self._queue = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BatchWriter:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def write(self, read: Callable[[], Received]) -> tuple[Received, Stored]:
        """The message ``read`` returns, once it is committed (or raises: it is not stored)."""
        future: asyncio.Future[tuple[Received, Stored]] = asyncio.get_running_loop().create_future()
        await self._queue.put((read, future))
        return await future

    def _read_and_store(self, jobs: list[Callable[[], Received]]) -> list[tuple[Received, Stored]]:
        received = [read() for read in jobs]
        return list(zip(received, store(self.engine, received, self.clock), strict=True))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await asyncio.to_thread(self._read_and_store, [read for read, _ in batch])
            except Exception as exc:  # the database: nothing of this batch is stored or acknowledged
                log.warning("intake: %d messages not stored (%s)", len(batch), type(exc).__name__)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
