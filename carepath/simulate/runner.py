"""Run scenarios through the production workflow, activities and database on Temporal's
time-skipping test server.

The test server's clock is global, so each worker process owns one server and runs its
scenarios one at a time, moving the clock explicitly with ``env.sleep``; parallelism comes
from several processes. Enrollment happens at 08:00 clinic time, events at 12:00 on their day.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures import ThreadPoolExecutor as Threads
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from activities.notifications import FileSink
from carepath.engine.definition import DefinitionCore
from carepath.engine.registry import default_pathway, pathway_for
from carepath.errors import FieldError, InvalidInput
from carepath.pathways import register_shipped
from carepath.simulate.scenario import (
    PlannedEvent,
    Scenario,
    in_scenario_terms,
    load_scenario,
    plan_events,
    raw_type,
)
from carepath.temporal import DATA_CONVERTER, bundled_binary, quiet_runtime
from db.engine import make_engine
from db.migrate import upgrade
from db.queries import episode_phase, timeline
from workflows.client import EpisodeClient, EpisodeClosed

ENROLL_TIME = time(8, 0)
EVENT_TIME = time(12, 0)
TASK_QUEUE = "carepath-simulate"
MAX_SIMULATED_DAYS = 3650
# Scenarios are written against the default pathway's (ovcf-lumbar's SPEC) v1, so that is what they run on unless asked.
SPEC_VERSION = 1
# Stories run at once per process, each on its own server: while one waits on its server,
# another uses the CPU (measured: the main thread waits ~70% of the time with one lane).
DEFAULT_LANES = 2
# A fixed day 0 for checking enrollments before anything runs: every check is relative.
_NOMINAL_DAY0 = date(2025, 1, 1)


@dataclass(frozen=True)
class Job:
    index: int
    path: str


def check_enrollment(scenario: Scenario, definition: DefinitionCore) -> None:
    """Raise ``InvalidInput`` (scenario field names) if the enrollment would be refused."""
    enrollment = scenario.enrollment.dated(_NOMINAL_DAY0)
    now = datetime.combine(
        _NOMINAL_DAY0 + timedelta(days=scenario.enroll_day), ENROLL_TIME, ZoneInfo(definition.clock.timezone)
    )
    try:
        pathway_for(definition.id).validate_enrollment(definition, enrollment, now)
    except InvalidInput as exc:
        renamed = in_scenario_terms(exc, "", pathway_for(definition.id))
        # enroll_day is the scenario's root key; everything else lives under enrollment.
        raise InvalidInput(
            e if e.field == "enroll_day" else FieldError(f"enrollment.{e.field}", e.message) for e in renamed.errors
        ) from None
    if scenario.until_day > scenario.enroll_day + MAX_SIMULATED_DAYS:
        raise InvalidInput.one("until_day", f"must be at most {MAX_SIMULATED_DAYS} days after enroll_day")


def load_all(paths: list[str], definition: DefinitionCore) -> list[Scenario]:
    """Every scenario validated before any runs, so one bad file creates nothing at all."""
    scenarios, errors = [], []
    for path in paths:
        try:
            scenario = load_scenario(Path(path))
            check_enrollment(scenario, definition)
            scenarios.append(scenario)
        except InvalidInput as exc:
            errors.append(FieldError(path, str(exc)))
    if errors:
        raise InvalidInput(errors)
    return scenarios


def run_files(
    paths: list[str],
    database_url: str | None,
    processes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    scratch: Path | None = None,
    pathway_version: int = SPEC_VERSION,
    lanes: int = DEFAULT_LANES,
) -> list[dict[str, Any]]:
    """Simulate ``paths`` side by side; results in the order given.

    ``processes`` worker processes each run ``lanes`` stories at once, every lane on its own
    time-skipping server (the server's clock is global, so one story per server at a time).
    """
    register_shipped()
    try:
        definition = default_pathway().definition(pathway_version)
    except LookupError as exc:
        raise InvalidInput.one("--pathway-version", str(exc)) from None
    load_all(paths, definition)
    if database_url is None:
        folder = scratch or Path(os.environ.get("TMPDIR", "/tmp"))
        database_url = f"sqlite:///{folder / f'carepath-sim-{uuid.uuid4().hex}.db'}"
    upgrade(database_url)
    jobs = [Job(i, p) for i, p in enumerate(paths)]
    workers = max(1, min(len(jobs), processes or os.cpu_count() or 1))
    lanes = max(1, min(lanes, -(-len(jobs) // workers)))
    chunks = [jobs[i::workers] for i in range(workers)]
    results: dict[int, dict[str, Any]] = {}

    def collect(index: int, result: dict[str, Any]) -> None:
        results[index] = result
        if progress:
            progress(len(results), len(jobs))

    if workers == 1:
        for index, result in asyncio.run(_run_chunk(chunks[0], database_url, pathway_version, lanes)):
            collect(index, result)
    else:
        # fork (where there is one) spares each worker re-importing everything; nothing that a
        # fork would break (threads, an event loop, Temporal's runtime) exists yet in this process.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [
                pool.submit(_run_chunk_in_process, chunk, database_url, pathway_version, lanes) for chunk in chunks
            ]
            for future in as_completed(futures):
                for index, result in future.result():
                    collect(index, result)
    return [results[i] for i in range(len(jobs))]


def _run_chunk_in_process(
    jobs: list[Job], database_url: str, version: int, lanes: int
) -> list[tuple[int, dict[str, Any]]]:
    return asyncio.run(_run_chunk(jobs, database_url, version, lanes))


async def _run_chunk(jobs: list[Job], database_url: str, version: int, lanes: int) -> list[tuple[int, dict[str, Any]]]:
    """Run ``jobs`` in ``lanes`` concurrent lanes, each with its own server, sharing one database."""
    register_shipped()  # a fresh worker process: the boot list
    definition = default_pathway().definition(version)
    engine = make_engine(database_url)
    try:
        per_lane = await asyncio.gather(*(_run_lane(jobs[i::lanes], engine, definition) for i in range(lanes)))
    finally:
        engine.dispose()
    return [item for lane in per_lane for item in lane]


async def _run_lane(jobs: list[Job], engine: Engine, definition: DefinitionCore) -> list[tuple[int, dict[str, Any]]]:
    from worker import build_worker  # the production worker, activities and all

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=bundled_binary("temporal-test-server"),
        data_converter=DATA_CONVERTER,
        runtime=quiet_runtime(),
    )
    out: list[tuple[int, dict[str, Any]]] = []
    try:
        # One episode runs at a time in a lane, so a handful of activity threads is plenty.
        with Threads(max_workers=4) as threads:
            # Simulated episodes deliver no notifications; the sink is only there to satisfy the worker.
            sink = FileSink(Path(os.devnull))
            worker = build_worker(env.client, engine, TASK_QUEUE, threads, sink, 100, max_concurrent_activities=4)
            async with worker:
                for job in jobs:
                    scenario = load_scenario(Path(job.path))
                    out.append((job.index, await simulate(env, engine, scenario, definition)))
    finally:
        await env.shutdown()
    return out


class _Clock:
    """The lane server's clock, read once per story and then tracked across our own sleeps.

    Nothing else moves this server's clock but ``sleep`` (one story at a time), so a read
    before every sleep was a wasted round trip; the few milliseconds of real time an update
    takes only make the next sleep land that much later than its 12:00.
    """

    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.known: datetime | None = None

    async def now(self) -> datetime:
        self.known = await self.env.get_current_time()
        return self.known

    async def sleep_until(self, at: datetime) -> None:
        known = self.known or await self.now()
        if at > known:
            await self.env.sleep(at - known)
            self.known = at


async def simulate(
    env: WorkflowEnvironment, engine: Engine, scenario: Scenario, definition: DefinitionCore
) -> dict[str, Any]:
    """Run one story: enroll, submit each event on its day, stop after ``until_day``."""
    zone = ZoneInfo(definition.clock.timezone)
    clock = _Clock(env)
    now = (await clock.now()).astimezone(zone)
    # Day 0 is pinned so that enrollment falls at 08:00 clinic time on the next calendar day.
    enroll_on = now.date() + timedelta(days=1)
    identified_on = enroll_on - timedelta(days=scenario.enroll_day)

    def at(day: int, clock: time) -> datetime:
        return datetime.combine(identified_on + timedelta(days=day), clock, zone)

    await clock.sleep_until(at(scenario.enroll_day, ENROLL_TIME))
    episode_id = uuid.uuid4().hex
    # Start and wait for the recorded baseline in one call, as CarepathService.enroll does.
    episodes = EpisodeClient(env.client, TASK_QUEUE)
    enrollment = scenario.enrollment.dated(identified_on)
    await episodes.start(episode_id, enrollment, definition, "simulate", simulated=True)

    rejected: list[dict[str, Any]] = []
    for planned in plan_events(scenario, identified_on):
        error = _outside_window(planned, scenario) or planned.error
        if error is None:
            await clock.sleep_until(at(planned.day, EVENT_TIME))
            error = await _submit(episodes, engine, episode_id, planned)
        if error is not None:
            rejected.append(
                {
                    "day": planned.day,
                    "type": raw_type(scenario, planned.index),
                    "index": planned.index,
                    "error": str(error),
                }
            )
    await clock.sleep_until(at(scenario.until_day, EVENT_TIME))
    final_phase = await _finish(episodes, engine, episode_id)
    return {
        "scenario": scenario.name,
        "episode_id": episode_id,
        "pathway": definition.key,
        "identified_on": identified_on.isoformat(),
        "timeline": timeline(engine, episode_id),
        "rejected": sorted(rejected, key=lambda r: (r["day"], r["index"])),
        "final_phase": final_phase,
    }


def _outside_window(planned: PlannedEvent, scenario: Scenario) -> InvalidInput | None:
    field = f"events[{planned.index}].day"
    if planned.day < scenario.enroll_day:
        return InvalidInput.one(field, f"is before enroll_day {scenario.enroll_day}: the episode does not exist yet")
    if planned.day > scenario.until_day:
        return InvalidInput.one(field, f"is after until_day {scenario.until_day}: the simulation has stopped")
    return None


async def _submit(
    episodes: EpisodeClient, engine: Engine, episode_id: str, planned: PlannedEvent
) -> InvalidInput | None:
    assert planned.event is not None
    try:
        await episodes.record_event(episode_id, planned.event, f"{episode_id}-{planned.index}", "simulate")
    except InvalidInput as rejected:
        return in_scenario_terms(rejected, f"events[{planned.index}]")
    except EpisodeClosed:
        phase = episode_phase(engine, episode_id)
        return InvalidInput.one("episode", f"episode is {phase}; no further events are accepted")
    return None


async def _finish(episodes: EpisodeClient, engine: Engine, episode_id: str) -> str:
    """The phase at the end of the story; a still-running episode is then terminated."""
    try:
        view = await episodes.catch_up(episode_id)
    except EpisodeClosed:
        return episode_phase(engine, episode_id)
    await episodes.handle(episode_id).terminate(reason="simulation reached until_day")
    return view.phase


def print_progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        print(f"\rsimulated {done}/{total} scenarios", end="\n" if done == total else "", file=sys.stderr)
