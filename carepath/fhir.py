"""FHIR R4 export: an episode as a Bundle (CarePlan, Tasks, and what people recorded, each event as
the resource its pathway maps it to, e.g. ovcf-lumbar's pain scores as Observations and notes as
Communications), its audit trail as AuditEvents.

Validated with the ``fhir.resources`` R4B models (R4B's CarePlan, Task and AuditEvent match R4
for what we use). The patient is referenced by identifier only: no other patient data leaves.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import Engine

from carepath.engine.pathway import Pathway
from carepath.engine.presentation import RecordedEvent
from carepath.engine.registry import pathway_for
from db.exports import episode_audit, episode_records
from db.models import AuditRow, EpisodeRow, EventRow, TaskRow

PATIENT_SYSTEM = "urn:carepath:patient"
EPISODE_SYSTEM = "urn:carepath:episode"
TASK_SYSTEM = "urn:carepath:task"
CODE_SYSTEM = "urn:carepath:timeline-code"
ROLE_SYSTEM = "urn:carepath:role"
_NAMESPACE = uuid.UUID("6f1c8f2e-6d55-4c8b-9a57-0c3b8f0f7a11")

# Our priorities onto FHIR's request-priority codes (routine | urgent | asap | stat).
PRIORITY = {"routine": "routine", "high": "urgent", "urgent": "asap"}
TASK_STATUS = {"open": "requested", "completed": "completed", "cancelled": "cancelled"}
# A reservation is not yet a plan in force; an abandoned one never was (created in error).
CAREPLAN_STATUS = {
    "reserving": "draft",
    "active": "active",
    "completed": "completed",
    "withdrawn": "revoked",
    "abandoned": "entered-in-error",
}


def _full_url(kind: str, key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{kind}/{key}')}"


def _instant(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _patient(ref: str) -> dict[str, Any]:
    return {"identifier": {"system": PATIENT_SYSTEM, "value": ref}}


def episode_bundle(engine: Engine, episode_id: str) -> dict[str, Any]:
    """The episode's CarePlan and its Tasks as a validated FHIR R4 ``collection`` Bundle."""
    episode, tasks, recorded = episode_records(engine, episode_id)
    plan_url = _full_url("CarePlan", episode.id)
    entries = [_task_entry(task, episode, plan_url) for task in tasks]
    pathway = pathway_for(episode.pathway_id)
    records = [e for row in recorded if (e := _event_entry(row, episode, pathway, plan_url)) is not None]
    care_plan = {
        "resourceType": "CarePlan",
        "identifier": [{"system": EPISODE_SYSTEM, "value": episode.id}],
        "instantiatesCanonical": [f"urn:carepath:pathway:{episode.pathway_id}|{episode.pathway_version}"],
        "status": CAREPLAN_STATUS.get(episode.status, "unknown"),
        "intent": "plan",
        "title": f"{episode.pathway_id} v{episode.pathway_version} ({episode.phase})",
        "subject": _patient(episode.patient_ref),
        "period": {"start": episode.identified_on.isoformat()},
        "created": _instant(episode.created_at),
        "activity": [{"reference": {"reference": entry["fullUrl"]}} for entry in entries],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": _instant(episode.updated_at),
        "entry": [{"fullUrl": plan_url, "resource": care_plan}, *entries, *records],
    }
    Bundle.model_validate(bundle)  # raises if we ever drift from R4
    return bundle


def _task_entry(task: TaskRow, episode: EpisodeRow, plan_url: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Task",
        "identifier": [{"system": TASK_SYSTEM, "value": str(task.id)}],
        "basedOn": [{"reference": plan_url}],
        "status": TASK_STATUS[task.status],
        "businessStatus": {"text": task.status},
        "intent": "plan",
        "priority": PRIORITY[task.priority],
        "description": task.title,
        "for": _patient(episode.patient_ref),
        "authoredOn": task.raised_on.isoformat(),
        "performerType": [{"coding": [{"system": ROLE_SYSTEM, "code": task.assignee}], "text": task.assignee}],
        "owner": {"display": task.assignee},
        "reasonCode": {"coding": [{"system": CODE_SYSTEM, "code": task.code, "display": task.title}]},
        "executionPeriod": {
            "start": task.raised_on.isoformat(),
            **({"end": _instant(task.closed_at)} if task.closed_at else {}),
        },
    }
    if task.due_on is not None:
        resource["restriction"] = {"period": {"end": task.due_on.isoformat()}}
    if task.close_reason:
        resource["note"] = [{"text": task.close_reason}]
    return {"fullUrl": _full_url("Task", f"{episode.id}/{task.id}"), "resource": resource}


EVENT_SYSTEM = "urn:carepath:event"


def _event_entry(row: EventRow, episode: EpisodeRow, pathway: Pathway, plan_url: str) -> dict[str, Any] | None:
    """The pathway's resource for one recorded event, with what every exported event carries:
    its identifier, the plan, the patient, when and by whom."""
    day = (row.occurred_on - episode.identified_on).days
    recorded = RecordedEvent(id=row.id, type=row.type, occurred_on=row.occurred_on, day=day, payload=row.payload)
    resource = pathway.fhir_resource(recorded)
    if resource is None:
        return None
    kind = resource["resourceType"]
    shared = {
        "identifier": [{"system": EVENT_SYSTEM, "value": row.id}],
        "basedOn": [{"reference": plan_url}],
        "subject": _patient(episode.patient_ref),
    }
    if kind == "Communication":
        shared |= {
            "status": "completed",
            "sent": _instant(row.recorded_at),
            "sender": {"display": row.recorded_by},
            "note": [{"text": f"recorded by {row.recorded_by} for {row.occurred_on.isoformat()}"}],
        }
    else:
        shared |= {
            "status": "final",
            "effectiveDateTime": row.occurred_on.isoformat(),
            "issued": _instant(row.recorded_at),
            "performer": [{"display": row.recorded_by}],
        }
    return {
        "fullUrl": _full_url(kind, f"{episode.id}/{row.id}"),
        "resource": {"resourceType": kind} | shared | resource,
    }


def audit_bundle(engine: Engine, episode_id: str) -> dict[str, Any]:
    """The episode's audit trail as FHIR R4 AuditEvents in a ``collection`` Bundle."""
    episode, rows = episode_audit(engine, episode_id)
    plan_url = _full_url("CarePlan", episode.id)
    entries = [
        {"fullUrl": _full_url("AuditEvent", f"{episode.id}/{row.id}"), "resource": _audit_event(row, plan_url)}
        for row in rows
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    Bundle.model_validate(bundle)
    return bundle


def _audit_event(row: AuditRow, plan_url: str) -> dict[str, Any]:
    # C create (enrollment), U update (everything after it), as FHIR's AuditEvent action codes.
    action = "C" if row.action == "enroll" else "U"
    role, _, name = row.actor.partition(":")
    detail = [{"type": key, "valueString": str(value)} for key, value in row.detail.items() if value]
    return {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [{"system": "urn:carepath:audit-action", "code": row.action}],
        "action": action,
        "recorded": _instant(row.at),
        "outcome": "0",
        "agent": [
            {
                "type": {"coding": [{"system": ROLE_SYSTEM, "code": role or row.actor}]},
                "who": {"display": name or row.actor},
                "requestor": True,
            }
        ],
        "source": {"observer": {"display": "carepath"}},
        "entity": [{"what": {"reference": plan_url}, "detail": detail}],
    }
