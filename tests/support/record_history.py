"""Record workflow histories for the replay test: ``python -m tests.support.record_history``.

Re-record only on purpose (a deliberate, versioned workflow change); the checked-in histories
are what running episodes look like, and the replay test proves new code still fits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import uuid
from pathlib import Path

from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError

from carepath.pathways.ovcf_lumbar.inputs import parse_event
from db.engine import make_engine
from db.migrate import upgrade
from tests.support.temporal import Clock, running_worker, start_episode, start_time_skipping, stop_episode
from workflows.contracts import EventRequest
from workflows.episode import EpisodeWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"

# One patient-year touching every kind of step: baseline, timers, due checks, events,
# evaluation, a rejected event, denosumab and maintenance.
STORY: list[tuple[int, dict]] = [
    (3, {"type": "medication_started", "agent": "denosumab"}),
    (29, {"type": "pain_assessment", "nrs": 7, "analgesics": ["opioid"], "opioid_effects": ["fall"]}),
    (44, {"type": "pain_assessment", "nrs": 6, "analgesics": ["opioid"], "mobility": "bed_rest"}),
    (50, {"type": "imaging", "modality": "mri", "marrow_edema": True}),
    (93, {"type": "pain_assessment", "nrs": 6, "analgesics": ["opioid"], "oral_analgesia_adequate": False}),
    (120, {"type": "note", "text": "Discussed augmentation options.", "author": "Dr Ames"}),
    (185, {"type": "dose_given", "agent": "denosumab"}),
]


async def record(path: Path) -> None:
    await _record_story(path, STORY, {"pain_nrs": 8, "analgesics": ["opioid"], "age": 78}, catch_up_on=380)


async def _record_story(
    path: Path, story: list[tuple[int, dict]], enrollment: dict, catch_up_on: int | None = None
) -> None:
    """Run ``story`` through the production worker and write the episode's history to ``path``;
    with ``catch_up_on`` the clock runs to that day first, else the episode is left mid-life."""
    env = await start_time_skipping()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/history.db"
        upgrade(url)
        engine = make_engine(url)
        try:
            async with running_worker(env, engine):
                clock = await Clock.for_enrollment(env)
                _, handle = await start_episode(env, clock, **enrollment)
                for day, fields in story:
                    await clock.to(day)
                    event = parse_event({"occurred_on": clock.on(day), **fields})
                    request = EventRequest(event=event, event_id=uuid.uuid4().hex, actor="recorder")
                    await handle.execute_update(EpisodeWorkflow.record_event, request)
                if catch_up_on is not None:
                    await clock.to(catch_up_on)
                    await handle.execute_update(EpisodeWorkflow.catch_up)
                history = await handle.fetch_history()
                await stop_episode(handle)
        finally:
            engine.dispose()
            await env.shutdown()
    path.write_text(history.to_json())


# Recorded on the rules before the SPEC section 8 amendment (once per milestone period for every
# code), and left mid-life: a running episode asleep on day 300, as thousands were in production.
MIDLIFE_STORY: list[tuple[int, dict]] = [
    (45, {"type": "pain_assessment", "nrs": 6, "analgesics": ["opioid"], "mobility": "bed_rest"}),
    (60, {"type": "pain_assessment", "nrs": 6, "analgesics": ["opioid"], "symptoms_changed": True}),
    (70, {"type": "imaging", "modality": "mri"}),
    (100, {"type": "red_flag", "flag": "neurological_deficit"}),
    (101, {"type": "pain_assessment", "nrs": 5, "analgesics": ["opioid"], "opioid_effects": ["fall"]}),
    (
        110,
        {"type": "override", "author": "Dr Ames", "reason": "seen by surgeon", "close_task": "SURGICAL_CONSULTATION"},
    ),
    (120, {"type": "imaging", "modality": "xray", "new_fracture": True}),
    (150, {"type": "pain_assessment", "nrs": 5, "analgesics": ["opioid"], "mobility": "bed_rest"}),
    (160, {"type": "pain_assessment", "nrs": 5, "analgesics": ["opioid"], "symptoms_changed": True}),
    (250, {"type": "red_flag", "flag": "cord_compression"}),
    (300, {"type": "imaging", "modality": "ct", "new_fracture": True}),
]


async def record_midlife(path: Path) -> None:
    await _record_story(path, MIDLIFE_STORY, {"pain_nrs": 7, "analgesics": ["opioid"], "age": 78})


async def record_generated(count: int, seed: int) -> list[Path]:
    """Histories of benchmark stories (bench/stories.py) run through the simulator's path."""
    from bench.stories import generate
    from carepath.simulate.scenario import Scenario, plan_events

    written = []
    env = await start_time_skipping()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/generated.db"
        upgrade(url)
        engine = make_engine(url)
        try:
            async with running_worker(env, engine):
                for index, raw in enumerate(generate(count, seed)):
                    scenario = Scenario.model_validate(raw)
                    clock = await Clock.for_enrollment(env, scenario.enroll_day)
                    enrollment = scenario.enrollment.dated(clock.day0).model_dump(mode="json")
                    enrollment = {k: v for k, v in enrollment.items() if k != "identified_on"}
                    _, handle = await start_episode(env, clock, **enrollment)
                    for planned in plan_events(scenario, clock.day0):
                        if planned.event is None or planned.day < scenario.enroll_day:
                            continue
                        await clock.to(planned.day)
                        request = EventRequest(event=planned.event, event_id=uuid.uuid4().hex, actor="recorder")
                        # A rejected event (or one after the episode ended) is part of the story.
                        with contextlib.suppress(WorkflowUpdateFailedError, RPCError):
                            await handle.execute_update(EpisodeWorkflow.record_event, request)
                    await clock.to(scenario.until_day)
                    path = HISTORIES / f"generated-{seed}-{index}.json"
                    path.write_text((await handle.fetch_history()).to_json())
                    written.append(path)
                    await stop_episode(handle)
        finally:
            engine.dispose()
            await env.shutdown()
    return written


if __name__ == "__main__":
    HISTORIES.mkdir(exist_ok=True)
    if "--generated" in sys.argv:
        for path in asyncio.run(record_generated(int(sys.argv[sys.argv.index("--generated") + 1]), seed=11)):
            print(f"wrote {path}")
    elif "--local" in sys.argv:  # the story on the code that records in the workflow task (record-local)
        asyncio.run(record(HISTORIES / "episode-year-local.json"))
        print(f"wrote {HISTORIES / 'episode-year-local.json'}")
    elif "--midlife" in sys.argv:
        asyncio.run(record_midlife(HISTORIES / "midlife-rules-r1.json"))
        print(f"wrote {HISTORIES / 'midlife-rules-r1.json'}")
    else:
        asyncio.run(record(HISTORIES / "episode-year-v1.json"))
        print(f"wrote {HISTORIES / 'episode-year-v1.json'}")
