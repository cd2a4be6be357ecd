"""The worklist's counts (kept by the task ledger, db/task_counts.py) equal a fresh count of the
tasks after any mix of raised, closed, reassigned and withdrawn tasks, on SQLite and PostgreSQL,
through the production writing code; and under concurrent recordings and folds."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, case, func, select, text
from sqlalchemy.orm import Session

from activities.recording import ChangeRecord, EpisodeOpened, write_changes
from carepath.engine.items import Changes, TimelineEntry
from db import task_counts
from db.assignments import assign
from db.engine import make_engine
from db.models import EpisodeRow, TaskCountRow, TaskRow
from db.queries import TaskFilter
from db.queries import task_counts as worklist_counts
from db.tasks import close_after_workflow
from tests.support.cohort import record, typical

TODAY = date(2026, 6, 1)
NOW = datetime(2026, 6, 1, 9, tzinfo=UTC)
FILTERS = [
    TaskFilter(**fields)
    for status in ("open", "completed", "cancelled")
    for fields in (
        {"status": status},
        {"status": status, "include_simulated": True},
        *({"status": status, "assignee": a} for a in ("coordinator", "physician", "patient")),
        *({"status": status, "priority": p} for p in ("urgent", "high", "routine")),
        {"status": status, "owner": "Dr Ada"},
        {"status": status, "owner": "Nurse Bo", "assignee": "coordinator"},
    )
]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def counted_afresh(engine: Engine, f: TaskFilter) -> dict[str, dict[str, int]]:
    """What COUNT(*) over the tasks themselves says, per priority (the oracle)."""
    query = select(TaskRow.priority, func.count(), func.sum(case((TaskRow.due_on < TODAY, 1), else_=0)))
    query = query.join(EpisodeRow, EpisodeRow.id == TaskRow.episode_id).where(TaskRow.status == f.status)
    for column, value in ((TaskRow.assignee, f.assignee), (TaskRow.priority, f.priority), (TaskRow.owner, f.owner)):
        if value is not None:
            query = query.where(column == value)
    if not f.include_simulated:
        query = query.where(EpisodeRow.simulated.is_(False))
    with Session(engine) as session:
        rows = session.execute(query.group_by(TaskRow.priority)).all()
    return {p: {"total": n, "overdue": int(late or 0)} for p, n, late in rows}


def assert_counts_match(engine: Engine) -> None:
    for f in FILTERS:
        assert worklist_counts(engine, TODAY, f) == counted_afresh(engine, f), f


def record_patients(engine: Engine, first: int, how_many: int, seed: int) -> None:
    """Patients' stories played by the rules and written through the recording code: tasks raised
    and closed by the pathway, some withdrawn (their open tasks cancelled), some ending."""
    rng = random.Random(seed)
    for n in range(first, first + how_many):
        story = typical(f"MRN-{n:05d}", TODAY - timedelta(days=rng.randint(0, 250)), rng)
        if n % 5 == 0:
            story.events.append((rng.randint(3, 60), {"type": "withdraw", "reason": "declined"}))
        with Session(engine) as session, session.begin():
            record(session, f"{n:032x}", story, TODAY)


def open_task_ids(engine: Engine) -> list[int]:
    with Session(engine) as session:
        return list(session.scalars(select(TaskRow.id).where(TaskRow.status == "open").order_by(TaskRow.id)))


def record_simulated(engine: Engine) -> None:
    """A simulated episode's task: counted only when simulated episodes are asked for."""
    item = TimelineEntry(
        code="call-patient", kind="task", day=0, on=TODAY, milestone="enrollment", priority="routine",
        assignee="coordinator", title="Call", detail="Call", due_on=TODAY - timedelta(days=3),
    )  # fmt: skip
    opened = EpisodeOpened(
        patient_ref="SIM-1", pathway_id="ovcf-lumbar", pathway_version=1, identified_on=TODAY, enrolled_on=TODAY,
        simulated=True,
    )  # fmt: skip
    change = ChangeRecord(
        change_id="sim/1", episode_id="sim", at=NOW, phase="acute", actor="sim", action="enroll", opened=opened,
        changes=Changes(items=[item]),
    )  # fmt: skip
    with Session(engine) as session, session.begin():
        write_changes(session, change)


def test_worklist_counts_equal_a_fresh_count_after_raising_closing_reassigning_and_withdrawing(engine: Engine) -> None:
    record_patients(engine, 0, 40, seed=3)
    record_simulated(engine)
    assert_counts_match(engine)
    assert worklist_counts(engine, TODAY, TaskFilter())  # the cohort has open tasks to count at all

    ids = open_task_ids(engine)
    for task_id in ids[::4]:  # taken on by a person, some handed on, some handed back
        assign(engine, task_id, "Dr Ada", "physician:ada", NOW)
    for task_id in ids[::8]:
        assign(engine, task_id, "Nurse Bo", "nurse:bo", NOW)
    for task_id in ids[::16]:
        assign(engine, task_id, None, "nurse:bo", NOW)
    assert_counts_match(engine)

    for n, task_id in enumerate(ids[1::3]):  # closed on the page after the workflow had ended
        close_after_workflow(engine, task_id, "completed" if n % 2 else "cancelled", "done", "nurse:bo", NOW)
    assert_counts_match(engine)

    task_counts.fold(engine)
    assert_counts_match(engine)
    with Session(engine) as session:  # folded: one row per key, none that sum to nothing
        keys = session.execute(select(func.count(), func.min(TaskCountRow.n))).one()
    assert keys[1] > 0

    record_patients(engine, 40, 10, seed=4)  # more after the fold
    assert_counts_match(engine)


def test_any_write_to_tasks_keeps_the_counts_even_one_made_outside_the_product_code(engine: Engine) -> None:
    record_patients(engine, 0, 12, seed=5)
    with engine.begin() as db:  # say, a repair by hand
        db.execute(text("UPDATE tasks SET assignee = 'patient', due_on = NULL WHERE id % 3 = 0"))
        db.execute(text("UPDATE tasks SET priority = 'urgent' WHERE id % 5 = 0"))
        db.execute(text("UPDATE tasks SET title = 'Renamed'"))  # no counted column: no ledger rows
        db.execute(text("DELETE FROM tasks WHERE id % 7 = 0"))
    assert_counts_match(engine)


def test_concurrent_recordings_and_folds_keep_the_counts(engine: Engine) -> None:
    """Four writers record patients while a reader folds the ledger over and over."""
    failures: list[BaseException] = []
    done = threading.Event()

    def guarded(work, *args) -> None:
        try:
            work(*args)
        except BaseException as exc:  # reported by the test below
            failures.append(exc)

    def folding() -> None:
        while not done.is_set():
            task_counts.fold(engine)

    writers = [threading.Thread(target=guarded, args=(record_patients, engine, 100 * w, 8, w)) for w in range(4)]
    folder = threading.Thread(target=guarded, args=(folding,))
    folder.start()
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    done.set()
    folder.join()
    assert failures == []
    assert_counts_match(engine)
