"""The store on SQLite and on PostgreSQL: schema, idempotent recording, read models."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from activities.recording import ChangeRecord, EpisodeOpened, EpisodeRecorder, RecordedEvent, write_changes
from carepath.engine.items import Changes, TaskClosure, TimelineEntry
from db import queries
from db.audit import audit_trail, write_audit
from db.engine import make_engine
from db.migrate import alembic_config
from db.models import AuditRow, Base, EpisodeRow, EventRow, NotificationRow, TaskRow, TimelineItemRow

DAY0 = date(2026, 3, 2)
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


# ---- building records -------------------------------------------------------------------------


def entry(code: str, kind: str = "task", *, day: int = 0, milestone: str = "enrollment", **extra: Any):
    fields: dict[str, Any] = {
        "priority": "routine",
        "assignee": "coordinator" if kind in ("task", "flag", "escalation") else None,
        "title": f"{code} title",
        "detail": f"{code} detail",
    }
    fields.update(extra)
    return TimelineEntry(code=code, kind=kind, day=day, on=DAY0 + timedelta(days=day), milestone=milestone, **fields)


def opened(patient_ref: str = "p-1", simulated: bool = False) -> EpisodeOpened:
    return EpisodeOpened(
        patient_ref=patient_ref,
        pathway_id="ovcf-lumbar",
        pathway_version=1,
        identified_on=DAY0,
        enrolled_on=DAY0,
        simulated=simulated,
    )


def change(
    episode_id: str,
    seq: int,
    *,
    items: list[TimelineEntry] = (),
    closures: list[TaskClosure] = (),
    phase: str = "acute",
    action: str = "test",
    at: datetime | None = None,
    **extra: Any,
) -> ChangeRecord:
    return ChangeRecord(
        change_id=f"{episode_id}/{seq}",
        episode_id=episode_id,
        at=at or T0 + timedelta(hours=seq),
        phase=phase,
        actor="nurse@example.org",
        action=action,
        changes=Changes(items=list(items), closures=list(closures)),
        **extra,
    )


def record(engine: Engine, *records: ChangeRecord) -> None:
    """Each record in its own transaction, as the activity writes it."""
    for rec in records:
        with Session(engine) as session, session.begin():
            write_changes(session, rec)


def rows(engine: Engine, model: type[Base], episode_id: str = "ep-1") -> list[Any]:
    with Session(engine) as session:
        return list(session.scalars(select(model).where(model.episode_id == episode_id).order_by(model.id)))


def count(engine: Engine, model: type[Base]) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (written in UTC here); PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


ENROLLMENT_ITEMS = [
    entry("call-patient", "task", notify=True, due_on=DAY0 + timedelta(days=2)),
    entry("red-flag", "flag", priority="urgent", assignee="physician", notify=True),
    entry("refer-spine", "escalation", priority="high", assignee="physician"),
    entry("baseline-recorded", "info"),
    entry("phase-acute", "phase"),
]


def enrollment(
    episode_id: str = "ep-1", patient_ref: str = "p-1", simulated: bool = False, **extra: Any
) -> ChangeRecord:
    return change(
        episode_id,
        1,
        items=ENROLLMENT_ITEMS,
        opened=opened(patient_ref, simulated),
        event=RecordedEvent(
            event_id=f"{episode_id}-enrolment", type="enrollment", occurred_on=DAY0, payload={"pain_nrs": 5}
        ),
        action="enroll",
        **extra,
    )


# ---- schema -----------------------------------------------------------------------------------


def test_migrations_create_every_table_at_head(engine: Engine, database_url: str) -> None:
    tables = set(inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all() == [head]


# ---- recording --------------------------------------------------------------------------------


def test_opening_an_episode_writes_its_timeline_tasks_notifications_audit_and_event(engine: Engine) -> None:
    record(engine, enrollment())

    with Session(engine) as session:
        episode = session.get(EpisodeRow, "ep-1")
        assert (episode.patient_ref, episode.pathway_id, episode.pathway_version) == ("p-1", "ovcf-lumbar", 1)
        assert (episode.phase, episode.status) == ("acute", "active")

    assert [item.code for item in rows(engine, TimelineItemRow)] == [
        "call-patient",
        "red-flag",
        "refer-spine",
        "baseline-recorded",
        "phase-acute",
    ]

    tasks = {task.code: task for task in rows(engine, TaskRow)}
    assert set(tasks) == {"call-patient", "red-flag", "refer-spine"}  # task, flag, escalation only
    assert all(task.status == "open" and task.closed_at is None for task in tasks.values())
    assert tasks["call-patient"].due_on == DAY0 + timedelta(days=2)
    assert (tasks["red-flag"].assignee, tasks["red-flag"].priority) == ("physician", "urgent")

    notifications = rows(engine, NotificationRow)
    assert [(n.code, n.recipient_role, n.status) for n in notifications] == [
        ("call-patient", "coordinator", "pending"),
        ("red-flag", "physician", "pending"),
    ]
    assert notifications[1].subject == "[urgent] red-flag title"

    [audit] = rows(engine, AuditRow)
    assert (audit.change_id, audit.action, audit.actor) == ("ep-1/1", "enroll", "nurse@example.org")
    assert audit.detail["raised"] == [str(item.key) for item in ENROLLMENT_ITEMS]
    assert audit.detail["event_id"] == "ep-1-enrolment"

    [event] = rows(engine, EventRow)
    assert (event.id, event.type, event.occurred_on, event.payload) == (
        "ep-1-enrolment",
        "enrollment",
        DAY0,
        {"pain_nrs": 5},
    )
    assert event.recorded_by == "nurse@example.org"


def test_a_retried_activity_writes_nothing_twice(engine: Engine) -> None:
    recorder = EpisodeRecorder(engine)
    first = enrollment()
    recorder.record_changes(first)
    models = (EpisodeRow, TimelineItemRow, TaskRow, NotificationRow, AuditRow, EventRow)
    before = {model.__name__: count(engine, model) for model in models}
    assert before == {
        "EpisodeRow": 1,
        "TimelineItemRow": 5,
        "TaskRow": 3,
        "NotificationRow": 2,
        "AuditRow": 1,
        "EventRow": 1,
    }

    recorder.record_changes(first)  # the same record again: a retry after a lost reply
    record(engine, first)

    assert {model.__name__: count(engine, model) for model in models} == before


def test_one_audit_writer_refuses_a_second_entry_for_one_change_unless_told_to_keep_the_first(
    engine: Engine,
) -> None:
    record(engine, enrollment())  # ep-1, with its enroll entry
    entry = {"episode_id": "ep-1", "actor": "coordinator:a", "action": "task:assigned"}
    later = T0 + timedelta(days=1)
    with Session(engine) as session, session.begin():
        write_audit(session, change_id="ep-1/owner-1", at=later, detail={"owner": "Dana"}, **entry)
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        write_audit(session, change_id="ep-1/owner-1", at=later, detail={"owner": "Sam"}, **entry)
    with engine.begin() as connection:  # a retried recording: the first entry stays, nothing doubles
        write_audit(connection, change_id="ep-1/owner-1", at=later, detail={"owner": "Sam"}, keep_written=True, **entry)

    trail = audit_trail(engine, "ep-1")
    assert [(row.action, row.actor, row.detail.get("owner")) for row in trail] == [
        ("enroll", "nurse@example.org", None),
        ("task:assigned", "coordinator:a", "Dana"),
    ]
    assert utc(trail[1].at) == later


def test_a_later_step_raising_the_same_item_again_does_not_duplicate_it(engine: Engine) -> None:
    record(engine, enrollment(), change("ep-1", 2, items=[entry("call-patient", notify=True)]))

    assert [task.code for task in rows(engine, TaskRow)].count("call-patient") == 1
    assert [n.code for n in rows(engine, NotificationRow)].count("call-patient") == 1
    assert len(rows(engine, AuditRow)) == 2  # but the step itself is audited


def test_a_closure_closes_only_the_open_task_of_that_code_and_milestone(engine: Engine) -> None:
    record(
        engine,
        enrollment(),
        change("ep-1", 2, items=[entry("call-patient", day=14, milestone="week-2")]),
        change(
            "ep-1",
            3,
            closures=[TaskClosure(code="call-patient", milestone="enrollment", status="completed", reason="done")],
        ),
    )
    closed_at = T0 + timedelta(hours=3)

    tasks = {(task.code, task.occasion): task for task in rows(engine, TaskRow)}
    done = tasks["call-patient", "enrollment"]
    assert (done.status, done.close_reason, utc(done.closed_at)) == ("completed", "done", closed_at)
    assert tasks["call-patient", "week-2"].status == "open"
    assert tasks["red-flag", "enrollment"].status == "open"
    assert tasks["refer-spine", "enrollment"].status == "open"

    # Closing it again (say, a cancellation that arrives late) changes nothing.
    record(
        engine,
        change(
            "ep-1",
            4,
            closures=[TaskClosure(code="call-patient", milestone="enrollment", status="cancelled", reason="late")],
        ),
    )
    [again] = [t for t in rows(engine, TaskRow) if (t.code, t.occasion) == ("call-patient", "enrollment")]
    assert (again.status, again.close_reason, utc(again.closed_at)) == ("completed", "done", closed_at)


@pytest.mark.parametrize("final_phase", ["completed", "withdrawn"])
def test_a_patient_has_at_most_one_active_episode(engine: Engine, final_phase: str) -> None:
    record(engine, enrollment("ep-1", "p-1"))

    with pytest.raises(IntegrityError):
        record(engine, enrollment("ep-2", "p-1"))
    with Session(engine) as session:
        assert session.get(EpisodeRow, "ep-2") is None  # nothing of the rejected episode remains
    assert count(engine, TimelineItemRow) == len(ENROLLMENT_ITEMS)

    record(engine, enrollment("ep-3", "p-2"))  # another patient is unaffected

    record(engine, change("ep-1", 2, phase=final_phase))
    with Session(engine) as session:
        assert session.get(EpisodeRow, "ep-1").status == final_phase

    record(engine, enrollment("ep-2", "p-1"))  # once the first is over, a new one may start
    with Session(engine) as session:
        statuses = session.execute(
            select(EpisodeRow.id, EpisodeRow.status).where(EpisodeRow.patient_ref == "p-1").order_by(EpisodeRow.id)
        ).all()
    assert statuses == [("ep-1", final_phase), ("ep-2", "active")]


def test_simulated_episodes_never_block_a_patients_real_one(engine: Engine) -> None:
    record(engine, enrollment("sim-1", "p-1", simulated=True), enrollment("sim-2", "p-1", simulated=True))
    record(engine, enrollment("ep-1", "p-1"))  # a real enrollment is still accepted

    with pytest.raises(IntegrityError):
        record(engine, enrollment("ep-2", "p-1"))
    record(engine, enrollment("sim-3", "p-1", simulated=True))  # nor does a real one block a simulation


# ---- read models ------------------------------------------------------------------------------


def test_timeline_lists_items_in_order_with_the_status_of_tasks(engine: Engine) -> None:
    record(
        engine,
        enrollment(),
        change("ep-1", 2, items=[entry("pain-check", day=7, milestone="week-1"), entry("week-1-note", "info", day=7)]),
        change(
            "ep-1",
            3,
            closures=[TaskClosure(code="red-flag", milestone="enrollment", status="cancelled", reason="ruled out")],
        ),
    )

    timeline = queries.timeline(engine, "ep-1")

    assert [(item["day"], item["code"]) for item in timeline] == [
        (0, "call-patient"),
        (0, "red-flag"),
        (0, "refer-spine"),
        (0, "baseline-recorded"),
        (0, "phase-acute"),
        (7, "pain-check"),
        (7, "week-1-note"),
    ]
    by_code = {item["code"]: item for item in timeline}
    assert by_code["call-patient"]["status"] == "open"
    assert by_code["call-patient"]["due_on"] == "2026-03-04"
    assert by_code["red-flag"]["status"] == "cancelled"
    assert by_code["pain-check"]["date"] == "2026-03-09"
    assert "status" not in by_code["baseline-recorded"]  # not a task
    assert queries.timeline(engine, "ep-unknown") == []
    assert queries.episode_phase(engine, "ep-1") == "acute"


def test_a_change_for_an_episode_never_opened_is_refused_and_writes_nothing(engine: Engine) -> None:
    with pytest.raises(LookupError, match="never opened"):
        record(engine, change("ep-unknown", 1, items=[entry("call-patient", notify=True)]))

    assert [count(engine, model) for model in (TimelineItemRow, TaskRow, NotificationRow, AuditRow)] == [0, 0, 0, 0]


def test_migration_0004_keeps_every_row_and_keys_items_by_occasion(engine: Engine, database_url: str) -> None:
    # A store as the engine left it before SPEC section 8 was amended: items keyed by milestone.
    command.downgrade(alembic_config(database_url), "0003")
    with engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO episodes (id, patient_ref, pathway_id, pathway_version, identified_on, enrolled_on,"
                " phase, status, simulated, created_at, updated_at) VALUES ('ep-old', 'p-old', 'ovcf-lumbar', 1,"
                " '2026-03-02', '2026-03-02', 'evaluation', 'active', false, '2026-03-02', '2026-03-02')"
            )
        )
        db.execute(
            text(
                "INSERT INTO timeline_items (episode_id, code, kind, priority, assignee, title, detail, evidence,"
                " day, on_date, milestone, created_at) VALUES ('ep-old', 'NEW_FRACTURE', 'escalation', 'urgent',"
                " 'physician', 'New fracture', '', '[]', 100, '2026-06-10', 'month3', '2026-06-10')"
            )
        )
        db.execute(
            text(
                "INSERT INTO tasks (episode_id, timeline_item_id, code, milestone, kind, priority, assignee, title,"
                " raised_on, status) SELECT 'ep-old', id, 'NEW_FRACTURE', 'month3', 'escalation', 'urgent',"
                " 'physician', 'New fracture', '2026-06-10', 'completed' FROM timeline_items"
            )
        )
    command.upgrade(alembic_config(database_url), "head")
    engine.dispose()  # the columns changed under the pool's cached statements
    [task] = rows(engine, TaskRow, "ep-old")
    assert (task.episode_id, task.code, task.occasion, task.status) == ("ep-old", "NEW_FRACTURE", "month3", "completed")
    [item] = rows(engine, TimelineItemRow, "ep-old")
    assert (item.code, item.occasion, item.day) == ("NEW_FRACTURE", "month3", 100)
    # A second new fracture in month3 is an item of its own; the same key twice still is not.
    record = change("ep-old", 7, items=[entry("NEW_FRACTURE", "escalation", day=300, milestone="imaging-day300")])
    record.opened = None
    with Session(engine) as session, session.begin():
        write_changes(session, record)
    with Session(engine) as session, session.begin():
        write_changes(session, record)
    assert sorted(t.occasion for t in rows(engine, TaskRow, "ep-old")) == ["imaging-day300", "month3"]
    with pytest.raises(IntegrityError), engine.begin() as db:
        db.execute(
            text(
                "INSERT INTO timeline_items (episode_id, code, kind, priority, title, detail, evidence, day, on_date,"
                " occasion, created_at) VALUES ('ep-old', 'NEW_FRACTURE', 'escalation', 'urgent', 't', '', '[]', 1,"
                " '2026-03-03', 'month3', '2026-03-03')"
            )
        )
