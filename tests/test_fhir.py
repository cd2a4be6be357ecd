"""FHIR R4 export of an episode (CarePlan + Tasks) and of its audit trail (AuditEvents)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.recording import ChangeRecord, EpisodeOpened, write_changes
from carepath.engine.items import Changes
from carepath.fhir import audit_bundle, episode_bundle
from db.engine import make_engine
from db.models import TaskRow
from tests.support.story import Story


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _record_story(engine, episode_id: str = "ep-fhir") -> Story:
    story = Story(pain_nrs=6, age=88, ref="fhir-patient").event(3, "medication_started", agent="risedronate")
    story.until(40)
    opened = EpisodeOpened(
        patient_ref="fhir-patient",
        pathway_id="ovcf-lumbar",
        pathway_version=1,
        identified_on=story.state.identified_on,
        enrolled_on=story.state.enrolled_on,
    )
    record = ChangeRecord(
        change_id=f"{episode_id}/1",
        episode_id=episode_id,
        at=datetime.now(UTC),
        phase=story.state.phase,
        actor="coordinator:kim",
        action="enroll",
        opened=opened,
        changes=Changes(items=story.items, closures=story.closures),
    )
    with Session(engine) as session, session.begin():
        write_changes(session, record)
    return story


def test_episode_bundle_is_valid_r4_with_a_careplan_and_its_tasks(engine):
    story = _record_story(engine)
    bundle = episode_bundle(engine, "ep-fhir")
    Bundle.model_validate(bundle)
    resources = [e["resource"] for e in bundle["entry"]]
    plan = resources[0]
    tasks = resources[1:]
    assert plan["resourceType"] == "CarePlan" and plan["intent"] == "plan" and plan["status"] == "active"
    assert plan["instantiatesCanonical"] == ["urn:carepath:pathway:ovcf-lumbar|1"]
    assert plan["subject"] == {"identifier": {"system": "urn:carepath:patient", "value": "fhir-patient"}}
    actionable = [i for i in story.items if i.kind in ("task", "flag", "escalation")]
    assert len(tasks) == len(actionable) == len(plan["activity"])
    assert all(t["basedOn"] == [{"reference": bundle["entry"][0]["fullUrl"]}] for t in tasks)
    by_code = {t["reasonCode"]["coding"][0]["code"]: t for t in tasks}
    started = by_code["START_OSTEOPOROSIS_THERAPY"]
    assert (started["status"], started["priority"]) == ("completed", "urgent")  # our "high"
    assert "end" in started["executionPeriod"]
    assert started["performerType"][0]["coding"][0]["code"] == "physician"
    overdue = by_code["PAIN_REASSESSMENT_OVERDUE"]
    assert (overdue["status"], overdue["priority"]) == ("requested", "urgent")
    reassess = by_code["PAIN_REASSESSMENT"]
    assert reassess["restriction"]["period"]["end"] == story.item("PAIN_REASSESSMENT").due_on.isoformat()


def test_no_patient_data_beyond_the_reference(engine):
    _record_story(engine)
    text = json.dumps(episode_bundle(engine, "ep-fhir")) + json.dumps(audit_bundle(engine, "ep-fhir"))
    assert "fhir-patient" in text
    assert '"88"' not in text and ": 88" not in text and "female" not in text


def test_audit_bundle_is_valid_r4_auditevents(engine):
    _record_story(engine)
    bundle = audit_bundle(engine, "ep-fhir")
    Bundle.model_validate(bundle)
    event = bundle["entry"][0]["resource"]
    assert event["resourceType"] == "AuditEvent" and event["action"] == "C"
    assert event["agent"][0]["who"]["display"] == "kim"
    assert event["agent"][0]["type"]["coding"][0]["code"] == "coordinator"


def test_unknown_episode_is_a_lookup_error(engine):
    with pytest.raises(LookupError):
        episode_bundle(engine, "nope")


def test_withdrawn_episode_is_revoked_with_cancelled_tasks(engine):
    """Recorded in two steps like the workflow does: the story to day 40, then a withdrawal."""
    story = Story(pain_nrs=6, ref="fhir-patient").until(40)
    first = len(story.items), len(story.closures)
    story.event(41, "withdraw", reason="transferred")
    opened = EpisodeOpened(
        patient_ref="fhir-patient",
        pathway_id="ovcf-lumbar",
        pathway_version=1,
        identified_on=story.state.identified_on,
        enrolled_on=story.state.enrolled_on,
    )
    steps = [
        ("conservative", "enroll", opened, story.items[: first[0]], story.closures[: first[1]]),
        ("withdrawn", "withdraw", None, story.items[first[0] :], story.closures[first[1] :]),
    ]
    for n, (phase, action, opened_, items, closures) in enumerate(steps, 1):
        record = ChangeRecord(
            change_id=f"ep-gone/{n}",
            episode_id="ep-gone",
            at=datetime(2026, 4, 11 + n, 12, tzinfo=UTC),
            phase=phase,
            actor="coordinator:kim",
            action=action,
            opened=opened_,
            changes=Changes(items=items, closures=closures),
        )
        with Session(engine) as session, session.begin():
            write_changes(session, record)

    bundle = episode_bundle(engine, "ep-gone")
    Bundle.model_validate(bundle)
    plan, *tasks = [e["resource"] for e in bundle["entry"]]
    assert plan["status"] == "revoked"
    with Session(engine) as session:
        rows = session.scalars(select(TaskRow).where(TaskRow.episode_id == "ep-gone")).all()
    assert len(tasks) == len(rows) == len(plan["activity"]) > 0
    assert all(t["status"] == "cancelled" and t["businessStatus"]["text"] == "cancelled" for t in tasks)
    assert all(t["note"] == [{"text": "episode withdrawn (transferred)"}] for t in tasks)
    assert all(t["executionPeriod"]["end"].startswith("2026-04-13") for t in tasks)
    priority = {t["reasonCode"]["coding"][0]["code"]: t["priority"] for t in tasks}
    assert priority["PHARMACOTHERAPY_OVERDUE"] == "asap"  # our "urgent"
    assert priority["PAIN_REASSESSMENT_OVERDUE"] == "urgent"  # our "high"
    assert priority["CALCIUM_VITAMIN_D"] == "routine"
    assert {t["identifier"][0]["value"] for t in tasks} == {str(r.id) for r in rows}
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])
