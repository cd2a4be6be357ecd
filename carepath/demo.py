"""`carepath dev --demo`: a handful of back-dated patients whose stories show every flow.

Each is a real enrollment through the service (the same path as the enroll form), dated so that
the pathway's own rules raise what a clinic meets on a Monday: an urgent red flag, a denosumab
dose already overdue, a check-in link waiting for the patient, a new patient's baseline tasks,
and a patient enrolled late. Running it again enrolls only
the patients not yet enrolled (the refs are fixed, so it is idempotent).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from carepath.service import CarepathService, Conflict
from db.tokens import create_token, token_names


@dataclass(frozen=True)
class DemoPatient:
    ref: str
    story: str
    days_ago: int  # day 0 (fracture identified) this many days before today
    fields: dict[str, Any]


# (ref, what the story shows, days since day 0, the enrollment's own fields); "{ago:200}" is a date.
STORIES: list[tuple[str, str, int, dict[str, Any]]] = [
    (
        "DEMO-URGENT",
        "red flag: an urgent surgical consultation, due today (physicians are told again after 4 h)",
        2,
        {
            "patient": {"age": 81, "sex": "female"},
            "pain_nrs": 8,
            "analgesics": ["opioid"],
            "red_flags": ["cord_compression"],
            "fracture": {"levels": ["L1"]},
        },
    ),
    (
        "DEMO-OVERDUE",
        "on denosumab, last dose 200 days ago: the next dose is 18 days overdue",
        20,
        {
            "patient": {"age": 74, "sex": "female"},
            "pain_nrs": 5,
            "analgesics": ["nsaid"],
            "osteoporosis_therapy": {"agent": "denosumab", "last_dose_on": "{ago:200}"},
            "calcium_vitamin_d": True,
        },
    ),
    (
        "DEMO-CHECKIN",
        "day 27: the patient asked to report their pain; a check-in link waits for them (week 4 is tomorrow)",
        27,
        {
            "patient": {"age": 69, "sex": "male"},
            "pain_nrs": 6,
            "analgesics": ["nsaid", "acetaminophen"],
            "osteoporosis_therapy": {"agent": "alendronate"},
            "calcium_vitamin_d": True,
        },
    ),
    (
        "DEMO-NEW",
        "identified today, 77 and on an opioid: the baseline tasks and an opioid caution",
        0,
        {
            "patient": {"age": 77, "sex": "female"},
            "pain_nrs": 7,
            "analgesics": ["opioid"],
            "fracture": {"levels": ["L3", "L4"], "acute_injury": True, "correlating_symptoms": True},
        },
    ),
    (
        "DEMO-LATE",
        "enrolled eight weeks after the fracture: conservative phase, the 3-month evaluation ahead",
        58,
        {
            "patient": {"age": 66, "sex": "male"},
            "pain_nrs": 5,
            "analgesics": ["opioid"],
            "osteoporosis_therapy": {"agent": "risedronate"},
            "calcium_vitamin_d": True,
        },
    ),
]


def patients(today: date) -> list[DemoPatient]:
    def dated(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: dated(v) for k, v in value.items()}
        if isinstance(value, str) and value.startswith("{ago:"):
            return (today - timedelta(days=int(value[5:-1]))).isoformat()
        return value

    return [DemoPatient(ref, story, days, dated(fields)) for ref, story, days, fields in STORIES]


def _enrollment(patient: DemoPatient, today: date) -> dict[str, Any]:
    body: dict[str, Any] = {"fracture": {"levels": ["L2"]}, **patient.fields}
    body["patient"] = {"ref": patient.ref, **patient.fields["patient"]}
    body["identified_on"] = (today - timedelta(days=patient.days_ago)).isoformat()
    body["imaging"] = [{"performed_on": body["identified_on"], "modality": "xray"}]
    return body


def demo_tokens(engine: Any) -> list[tuple[str, str, str]]:
    """(name, role, token) for a demo coordinator and physician, made once (tokens are stored
    hashed, so a later start cannot show them again)."""
    taken = token_names(engine)
    made = []
    for name, role in (("demo-coordinator", "coordinator"), ("demo-physician", "physician")):
        if name not in taken:
            made.append((name, role, create_token(engine, name, role, "carepath dev --demo")[1]))
    return made


async def seed(service: CarepathService, patient_file: Path, public_url: str, wait: float = 15.0) -> list[str]:
    """Enroll the demo patients not yet enrolled; the lines to print (with the check-in link)."""
    from carepath.checkin_send import send_checkin

    today = service.today()
    lines = []
    for patient in patients(today):
        try:
            enrolled = await service.enroll(_enrollment(patient, today), "carepath:demo")
        except Conflict:
            lines.append(f"  {patient.ref:<14} already enrolled")
            continue
        lines.append(f"  {patient.ref:<14} {patient.story}  /ui/episodes/{enrolled.episode_id}")
        if patient.ref == "DEMO-CHECKIN":  # as a coordinator does when the patient asks
            await send_checkin(service, enrolled.episode_id, "carepath:demo", public_url)
    link = await checkin_link(patient_file, "DEMO-CHECKIN", wait)
    if link:
        lines.append(f"  the DEMO-CHECKIN patient's check-in link (open it as the patient would): {link}")
    return lines


async def checkin_link(patient_file: Path, ref: str, wait: float) -> str | None:
    """The newest check-in link sent to ``ref`` (delivery runs beside the episode: wait for it)."""
    for _ in range(int(wait / 0.1)):
        found = None
        if patient_file.exists():
            for line in patient_file.read_text(encoding="utf-8").splitlines():
                message = json.loads(line)
                if message.get("patient_ref") == ref and message.get("code") in ("CHECKIN", "CHECKIN_REMINDER"):
                    found = next((w for w in message["body"].split() if "/checkin/" in w), found)
        if found:
            return found
        await asyncio.sleep(0.1)
    return None
