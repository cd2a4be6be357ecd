"""Cohort measures and the workload forecast on PostgreSQL at 10,000 and 100,000 episodes.

    .venv/bin/python bench/measures.py [--episodes 10000,100000] [--repeat 20]

A throwaway PostgreSQL server (tests/support/postgres.py) gets the schema from the migrations and
200 patients' stories played by the pure rules over the last year and written through the
production recording code (tests/support/cohort.py: timeline, tasks, events, coming items),
then copied on the server (INSERT .. SELECT over generate_series: no rows through Python) to N
episodes, and VACUUM ANALYZEd. The app (in process, over ASGI: server time, no network) then
answers GET /measures, /measures?by=month, /measures/fhir, /forecast?weeks=12 and the
/ui/measures page. The bare baseline, timed in the same run: one GROUP BY over every timeline
item (what one pass over the store costs the database alone). Prints p50/p99 per request and a
SUMMARY line. Targets: p99 <= 500 ms at 10,000 episodes, <= 2 s at 100,000. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.worklist import figures, kept_or_temporary
from carepath import measures as measures_module
from carepath.app import create_app
from carepath.engine.registry import default_pathway
from carepath.pathways import register_shipped
from carepath.service import CarepathService
from carepath.settings import Settings
from db.engine import make_engine
from db.measure_facts import fill
from db.migrate import upgrade
from db.tokens import create_token
from tests.support.cohort import record, typical
from tests.support.postgres import running_postgres

TEMPLATES = 200
TARGETS_MS = {10_000: 500, 100_000: 2000}
# Copy c of template episode n is episode c * TEMPLATES + n; row ids are shifted by c * (max id + 1).
NEW_ID = "lpad(to_hex(c * :t + t.n), 32, '0')"
COPIES = {
    "episodes": f"""INSERT INTO episodes (id, patient_ref, pathway_id, pathway_version, identified_on, enrolled_on,
        phase, status, simulated, enrollment_digest, enrollment, created_at, updated_at)
      SELECT {NEW_ID}, 'MRN-' || lpad((c * :t + t.n)::text, 6, '0'),
        pathway_id, pathway_version, identified_on, enrolled_on, phase, status, simulated, enrollment_digest,
        enrollment, created_at, updated_at
      FROM episodes e JOIN template t ON t.id = e.id CROSS JOIN generate_series(1, :copies) c""",
    "timeline_items": f"""INSERT INTO timeline_items (id, episode_id, code, kind, priority, assignee, title, detail,
        evidence, day, on_date, occasion, created_at)
      SELECT i.id + c * :items, {NEW_ID}, code, kind, priority, assignee, title, detail, evidence, day, on_date,
        occasion, created_at
      FROM timeline_items i JOIN template t ON t.id = i.episode_id CROSS JOIN generate_series(1, :copies) c""",
    "tasks": f"""INSERT INTO tasks (id, episode_id, timeline_item_id, code, occasion, kind, priority, assignee, title,
        raised_on, due_on, status, closed_at, close_reason)
      SELECT k.id + c * :tasks, {NEW_ID}, k.timeline_item_id + c * :items, code, occasion, kind, priority, assignee,
        title, raised_on, due_on, status, closed_at, close_reason
      FROM tasks k JOIN template t ON t.id = k.episode_id CROSS JOIN generate_series(1, :copies) c""",
    "events": f"""INSERT INTO events (id, episode_id, type, occurred_on, payload, recorded_at, recorded_by)
      SELECT v.id || '-' || c, {NEW_ID}, type, occurred_on, payload, recorded_at, recorded_by
      FROM events v JOIN template t ON t.id = v.episode_id CROSS JOIN generate_series(1, :copies) c""",
    "coming_items": f"""INSERT INTO coming_items (episode_id, due_on, code, assignee)
      SELECT {NEW_ID}, due_on, code, assignee
      FROM coming_items m JOIN template t ON t.id = m.episode_id CROSS JOIN generate_series(1, :copies) c""",
}


def fill_templates(engine, today: date) -> None:
    rng = random.Random(21)
    with Session(engine) as session, session.begin():
        for n in range(TEMPLATES):
            story = typical(f"MRN-{n:06d}", today - timedelta(days=rng.randint(0, 364)), rng)
            record(session, f"{n:032x}", story, today)


def grow(engine, episodes: int) -> None:
    """Copy the templates on the server until there are ``episodes`` (a multiple of TEMPLATES)."""
    with engine.begin() as db:
        have = db.execute(text("SELECT count(*) FROM episodes")).scalar_one()
        copies_from, copies_to = have // TEMPLATES, episodes // TEMPLATES - 1
        if copies_to < copies_from:
            return
        db.execute(
            text(
                "CREATE TEMP TABLE template AS SELECT id, (row_number() OVER (ORDER BY id) - 1)::int AS n "
                f"FROM episodes WHERE id <= '{TEMPLATES - 1:032x}'"
            )
        )
        items = db.execute(text("SELECT max(id) + 1 FROM timeline_items WHERE episode_id IN (SELECT id FROM template)"))
        tasks = db.execute(text("SELECT max(id) + 1 FROM tasks WHERE episode_id IN (SELECT id FROM template)"))
        shifts = {"t": TEMPLATES, "items": items.scalar_one(), "tasks": tasks.scalar_one()}
        for sql in COPIES.values():
            query = sql.replace("generate_series(1, :copies)", f"generate_series({copies_from}, {copies_to})")
            db.execute(text(query), {k: v for k, v in shifts.items() if f":{k}" in query})
        for name in ("timeline_items", "tasks", "coming_items"):
            db.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))"))
        db.execute(text("DROP TABLE template"))
        # The copies are written around the recorder, so they have no facts yet: the set is filled again.
        db.execute(text("DELETE FROM measure_fact_sets"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(text("VACUUM ANALYZE"))


def baseline(engine, repeat: int) -> list[float]:
    times = []
    with engine.connect() as db:
        for _ in range(repeat):
            started = time.perf_counter()
            db.execute(text("SELECT code, count(*) FROM timeline_items GROUP BY code")).all()
            times.append((time.perf_counter() - started) * 1000)
    return times


async def measure(engine, repeat: int) -> list[tuple[str, float, float]]:
    service = CarepathService(None, engine, "unused")  # type: ignore[arg-type]  # reads only
    app = create_app(settings=Settings(), service=service)
    token = create_token(engine, "bench", "coordinator", "bench")[1]
    kinds = [  # (name, path, counted afresh: the report kept for an unchanged store dropped first)
        ("GET /measures, counted afresh", "/measures", True),
        ("GET /measures, store unchanged", "/measures", False),
        ("GET /measures?by=month, counted afresh", "/measures?by=month", True),
        ("GET /measures/fhir, counted afresh", "/measures/fhir", True),
        ("GET /forecast?weeks=12", "/forecast?weeks=12", False),
        ("page /ui/measures, counted afresh", "/ui/measures", True),
    ]
    results = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=60) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        for _, path, _ in kinds:  # warm: templates, plans, the pool
            assert (await client.get(path)).status_code == 200
        for name, path, afresh in kinds:
            times = []
            for _ in range(repeat):
                if afresh:
                    measures_module._reports.clear()
                started = time.perf_counter()
                answer = await client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text[:300]
            results.append(figures(name, times))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", default="10000,100000", help="comma-separated sizes (multiples of 200)")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", metavar="DIR", help="keep the data in DIR (under /tmp), reuse it next run")
    options = parser.parse_args()
    sizes = sorted(int(n) for n in options.episodes.split(","))
    register_shipped()
    summary = []
    with kept_or_temporary(options.keep) as folder, running_postgres(Path(folder), reuse=True) as url:
        upgrade(url)  # a kept store gets the migrations added since
        engine = make_engine(url)
        today = date.today()
        with engine.connect() as db:
            filled = db.execute(text("SELECT count(*) FROM episodes")).scalar_one()
        if not filled:
            fill_templates(engine, today)
        for size in sizes:
            started = time.perf_counter()
            grow(engine, size)
            with engine.connect() as db:
                counts = {
                    t: db.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                    for t in ("episodes", "timeline_items", "events", "coming_items")
                }
            print(f"\n{counts} on PostgreSQL (filled in {time.perf_counter() - started:.0f} s)")
            started = time.perf_counter()
            filled = fill(engine, default_pathway().measures())
            print(f"measure facts of {filled} episodes filled in {time.perf_counter() - started:.1f} s (once)")
            base = figures("bare: one GROUP BY over timeline_items", baseline(engine, options.repeat))
            results = asyncio.run(measure(engine, options.repeat))
            worst = max(results, key=lambda r: r[2])
            target = TARGETS_MS.get(size, 2000)
            verdict = "meets" if worst[2] <= target else "MISSES"
            summary.append(
                f"{size} episodes: worst p99 {worst[2]:.0f} ms ({worst[0]}), {verdict} the {target} ms target; "
                f"bare pass p50 {base[1]:.0f} ms"
            )
        engine.dispose()
    for line in summary:
        print("SUMMARY:", line)


if __name__ == "__main__":
    main()
