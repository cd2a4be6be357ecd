"""What ovcf-lumbar shows at the edges: words for its codes, its event forms, header facts, the
year picture's denosumab doses, its FHIR resources, and the patient's pain check-in.

Presentation only (pure): the rules never read any of it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from carepath.engine.presentation import (
    CheckIn,
    Choice,
    DuePoint,
    Fact,
    FormField,
    Mark,
    RecordedEvent,
    summary_line,
    words,
)
from carepath.errors import InvalidInput
from carepath.pathways.ovcf_lumbar.definition import PathwayDefinition
from carepath.pathways.ovcf_lumbar.inputs import PainAssessment, parse_model
from carepath.pathways.ovcf_lumbar.milestones import next_dose_due
from carepath.pathways.ovcf_lumbar.state import EpisodeState

PHASES = {
    "acute": "Acute",
    "conservative": "Conservative care",
    "evaluation": "Evaluation",
    "augmentation_review": "Augmentation review",
    "conservative_success": "Conservative care succeeded",
    "resolved": "Pain resolved",
    "maintenance": "Maintenance (on denosumab)",
    "completed": "Completed",
    "withdrawn": "Withdrawn",
}
EVENT_TYPES = {
    "pain_assessment": "Pain assessment",
    "medication_started": "Medication started",
    "medication_stopped": "Medication stopped",
    "dose_given": "Dose given",
    "imaging": "Imaging",
    "hospital_admission": "Hospital admission",
    "parenteral_narcotics": "Parenteral narcotics",
    "red_flag": "Red flag",
    "note": "Note",
    "override": "Override (physicians)",
    "withdraw": "Withdrawal",
}
VALUES = {
    "acetaminophen": "Acetaminophen (paracetamol)",
    "nsaid": "NSAID (ibuprofen, naproxen …)",
    "ambulatory": "Walks on their own",
    "limited": "Limited mobility",
    "bed_rest": "Bed rest",
    "xray": "X-ray",
    "ct": "CT",
    "mri": "MRI",
    "zoledronic_acid": "Zoledronic acid",
    "strontium_ranelate": "Strontium ranelate",
    "week4": "Week 4",
    "week6": "Week 6",
    "week8": "Week 8",
    "month3": "Month 3",
    "month12": "Month 12",
}
DUE_TITLES = {
    "milestone": "{ref} milestone",
    "reassessment_due": "{ref} pain reassessment overdue check",
    "watchdog": "osteoporosis pharmacotherapy check",
    "dose_reminder": "denosumab reminder for {ref}",
}
# Field labels per event type, in words (the rest: the field's name in words).
EVENT_LABELS: dict[str, dict[str, str]] = {
    "pain_assessment": {
        "occurred_on": "Occurred on",
        "nrs": "Pain (NRS 0-10)",
        "analgesics": "Analgesics in use",
        "oral_analgesia_adequate": "Oral analgesia adequate",
        "mobility": "Mobility",
        "symptoms_changed": "Symptoms changed",
        "opioid_effects": "Opioid effects",
    },
    "imaging": {"marrow_edema": "Marrow oedema"},
    "red_flag": {"flag": "Red flag"},
    "note": {"text": "Note"},
    "override": {"skip_milestone": "Skip milestone", "close_task": "or close task"},
}
ENROLLMENT_LABELS = {
    "identified_on": "Identified on (day 0)",
    "patient.ref": "Patient ref",
    "fracture.levels": "Levels",
    "pain_nrs": "Pain (NRS 0-10)",
    "analgesics": "Analgesics in use",
    "calcium_vitamin_d": "Calcium and vitamin D taken",
    "osteoporosis_therapy.agent": "Osteoporosis therapy",
    "osteoporosis_therapy.last_dose_on": "Last dose on",
    "imaging[].performed_on": "Study on",
    "imaging[].modality": "Modality",
}
ENROLLMENT_LAYOUT = [
    ("Patient", ["patient.ref", "patient.age", "patient.sex"], 0),
    ("Fracture", ["identified_on", "fracture.levels", "fracture.acute_injury", "fracture.correlating_symptoms"], 0),
    (
        "Pain and medication",
        [
            "pain_nrs",
            "analgesics",
            "contraindications",
            "calcium_vitamin_d",
            "osteoporosis_therapy.agent",
            "osteoporosis_therapy.last_dose_on",
        ],
        0,
    ),
    ("Imaging done", ["imaging[].performed_on", "imaging[].modality"], 3),
    ("Red flags", ["red_flags"], 0),
]


def enrollment_choices(definition: PathwayDefinition) -> dict[str, list[Choice]]:
    return {
        "analgesics": _choices(definition, list(definition.analgesics)),
        "contraindications": _choices(definition, definition.pain_medication_contraindication),
        "osteoporosis_therapy.agent": _choices(definition, definition.osteoporosis_agents),
        "red_flags": _choices(definition, list(definition.red_flags)),
    }


# What each event type shows in one line, in the order people read it.
SUMMARY_FIELDS = {
    "pain_assessment": (
        "nrs",
        "analgesics",
        "oral_analgesia_adequate",
        "mobility",
        "symptoms_changed",
        "opioid_effects",
    ),
    "medication_started": ("agent",),
    "medication_stopped": ("agent",),
    "dose_given": ("agent",),
    "imaging": ("modality", "new_fracture", "marrow_edema"),
    "red_flag": ("flag",),
    "note": ("author", "text"),
    "override": ("author", "skip_milestone", "close_task", "reason"),
    "withdraw": ("reason", "text"),
}


def label(definition: PathwayDefinition, code: str) -> str:
    if code in definition.actions:
        return definition.actions[code].title
    if code in definition.red_flags:
        return definition.red_flags[code][:1].upper() + definition.red_flags[code][1:]
    for table in (EVENT_TYPES, PHASES, VALUES):
        if code in table:
            return table[code]
    if "->" in code:  # a phase change
        old, new = code.split("->", 1)
        return f"{label(definition, old)} to {label(definition, new).lower()}"
    return words(code)


def _choices(definition: PathwayDefinition, values: list[str]) -> list[Choice]:
    return [Choice(value=v, label=label(definition, v)) for v in values]


def form_choices(definition: PathwayDefinition, event_type: str) -> dict[str, list[Choice]]:
    """The event fields whose vocabulary is the definition's (agents, analgesics, red flags)."""
    if event_type == "pain_assessment":
        return {"analgesics": _choices(definition, list(definition.analgesics))}
    if event_type in ("medication_started", "medication_stopped", "dose_given"):
        return {"agent": _choices(definition, definition.known_agents)}
    if event_type == "red_flag":
        return {"flag": _choices(definition, list(definition.red_flags))}
    if event_type == "override":
        return {
            "skip_milestone": _choices(definition, [m.name for m in definition.milestones]),
            "close_task": _choices(definition, list(definition.actions)),
        }
    return {}


def header_facts(state: EpisodeState) -> list[Fact]:
    d = state.definition
    therapy = ", ".join(label(d, a) for a in state.osteoporosis_agents) or "none recorded"
    if state.on_denosumab and state.denosumab_last_dose is not None:
        therapy += f" (last denosumab dose {state.denosumab_last_dose.isoformat()})"
    flags = [label(d, f) for f in state.red_flags]
    return [
        Fact(label="Age", value=str(state.age)),
        Fact(label="Sex", value=label(d, state.sex) if state.sex else "not recorded"),
        Fact(label="Fracture levels", value=", ".join(state.levels)),
        Fact(label="Latest pain", value=f"{state.latest_nrs} of 10 on {state.latest_pain_on.isoformat()}"),
        Fact(label="Analgesics", value=", ".join(label(d, a) for a in state.analgesics) or "none"),
        Fact(label="Osteoporosis therapy", value=therapy),
        Fact(label="Red flags", value="; ".join(flags) or "none recorded"),
    ]


def event_summary(event: RecordedEvent) -> str:
    return summary_line(event.payload, SUMMARY_FIELDS.get(event.type, ()))


def expected(state: EpisodeState) -> list[DuePoint]:
    """SPEC 4.3: the next denosumab dose's own day (the clock acts on its reminder, not on it)."""
    due = next_dose_due(state)
    if due is None:
        return []
    return [
        DuePoint(on=due, day=state.day_of(due), what="denosumab_dose", ref=due.isoformat(), title="next denosumab dose")
    ]


def picture_marks(definition: PathwayDefinition, events: list[RecordedEvent], upcoming: list[DuePoint]) -> list[Mark]:
    """Denosumab doses given (a dose, or the agent started) and the next one due."""
    agent = definition.denosumab.agent
    given = [
        Mark(day=e.day, kind="given", label=f"day {e.day}: {agent} given")
        for e in events
        if e.type in ("dose_given", "medication_started") and e.payload.get("agent") == agent
    ]
    due = next((p for p in upcoming if p.what == "denosumab_dose"), None)
    expected_mark = [Mark(day=due.day, kind="expected", label=f"next {agent} dose {due.on}")] if due else []
    return given + expected_mark


# LOINC 72514-3: pain severity, 0-10 verbal numeric rating, reported (the SPEC's NRS).
PAIN_CODE = {"system": "http://loinc.org", "code": "72514-3", "display": "Pain severity - 0-10 verbal numeric rating"}
SURVEY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}


def fhir_resource(event: RecordedEvent) -> dict[str, Any] | None:
    """Pain scores as Observations (LOINC 72514-3), notes as Communications; the rest is not exported."""
    payload = event.payload
    if event.type == "pain_assessment":
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "category": [SURVEY],
            "code": {"coding": [PAIN_CODE], "text": "pain NRS"},
            "valueInteger": payload["nrs"],
        }
        facts = [
            f"{k}: {v}" for k, v in payload.items() if k not in ("type", "occurred_on", "nrs") and v not in ([], None)
        ]
        if facts:
            resource["note"] = [{"text": "; ".join(facts)}]
        return resource
    if event.type == "note":
        return {
            "resourceType": "Communication",
            "payload": [{"contentString": payload["text"]}],
            **({"sender": {"display": payload["author"]}} if payload.get("author") else {}),
        }
    return None


# Patient tasks in the words a patient uses (the definition's titles are written for clinicians).
PATIENT_WORDS: dict[str, tuple[str, str]] = {
    "AVOID_BED_REST": (
        "Keep moving, even if it hurts a little",
        "Staying in bed for long makes bones and muscles weaker and can cause blood clots. "
        "Get up and walk around a few times a day, as far as your pain allows. "
        "Ask your care team if you are unsure what is safe for you.",
    ),
}


# ---- the patient's check-in (follow-up of a PAIN_REASSESSMENT) ------------------------------

# Words people use for the 0-10 scale (the NRS anchors).
NRS_WORDS = {0: "no pain", 2: "mild", 4: "moderate", 7: "severe", 10: "worst pain imaginable"}
PATIENT_ANALGESICS = {
    "acetaminophen": "Paracetamol (acetaminophen)",
    "nsaid": "Ibuprofen, naproxen or similar",
    "opioid": "Opioid (e.g. tramadol, codeine, morphine)",
}
NONE = Choice(value="none", label="None")
SAFETY = (
    "New weakness or numbness in your legs, or trouble controlling your bladder or bowels? "
    "Do not wait: call your doctor or emergency services now."
)


def _pairs(*pairs: tuple[str, str]) -> list[Choice]:
    return [Choice(value=value, label=label) for value, label in pairs]


def _questions(definition: PathwayDefinition) -> list[FormField]:
    analgesics = [
        Choice(value=a, label=PATIENT_ANALGESICS[a]) for a in PATIENT_ANALGESICS if a in definition.analgesics
    ]
    nrs = [Choice(value=str(n), label=NRS_WORDS.get(n, "")) for n in range(11)]
    yes_no = _pairs(("no", "No"), ("yes", "Yes"))
    return [
        FormField(
            name="nrs",
            kind="choice",
            required=True,
            scale=True,
            choices=nrs,
            label="How bad is your pain today, from 0 (no pain) to 10 (worst pain imaginable)?",
        ),
        FormField(
            name="analgesics",
            kind="choices",
            label="Which painkillers are you taking now?",
            choices=[*analgesics, NONE],
        ),
        FormField(
            name="adequate",
            kind="choice",
            label="Do the painkillers help enough?",
            choices=_pairs(("yes", "Yes, mostly"), ("no", "No, the pain is still too strong")),
        ),
        FormField(
            name="mobility",
            kind="choice",
            required=True,
            label="How well can you move around?",
            choices=_pairs(
                ("ambulatory", "I get around on my own"),
                ("limited", "I can move, but only a little or with help"),
                ("bed_rest", "I stay in bed most of the day"),
            ),
        ),
        FormField(
            name="symptoms_changed",
            kind="choice",
            label="Has the pain changed in a new way (spreading to the legs, different from before)?",
            choices=yes_no,
        ),
        FormField(
            name="opioid_effects",
            kind="choices",
            label="If you take an opioid: have you had any of these?",
            choices=_pairs(("sedation", "Very sleepy or drowsy"), ("nausea", "Feeling sick"), ("fall", "I had a fall")),
        ),
    ]


def check_in(definition: PathwayDefinition, code: str) -> CheckIn | None:
    """SPEC 4.1's reassessment asked of the patient: a link with every PAIN_REASSESSMENT, valid
    until the reassessment's overdue day, one reminder after ``patient_reminder_after_days``."""
    if code != "PAIN_REASSESSMENT":
        return None
    return CheckIn(
        closes=code,
        expires_after_days=definition.reassessment.overdue_after_days,
        remind_after_days=definition.reassessment.patient_reminder_after_days,
        title="How is your back pain?",
        intro="A few short questions for your care team. It takes about two minutes.",
        subject="How is your back pain? A two-minute check-in",
        reminder_subject="Reminder: how is your back pain?",
        opening="Your care team would like to know how your back pain is going.",
        reminder_opening="A few days ago we asked how your back pain is. We have not heard from you yet.",
        safety=SAFETY,
        questions=_questions(definition),
    )


def check_in_event(answers: dict[str, Any], today: date) -> PainAssessment:
    """The answers as a pain assessment; a bad answer raises InvalidInput naming the question.
    A question left unanswered stays absent (the model's own rule applies, nothing is guessed)."""
    raw_nrs = str(answers.get("nrs") or "").strip()
    if not raw_nrs.isdigit():
        raise InvalidInput.one("nrs", "choose a number from 0 to 10")
    payload: dict[str, Any] = {
        "type": "pain_assessment",
        "occurred_on": today.isoformat(),
        "nrs": int(raw_nrs),
        "analgesics": [a for a in answers.get("analgesics") or [] if a != "none"],
        "opioid_effects": [e for e in answers.get("opioid_effects") or [] if e != "none"],
        "mobility": answers.get("mobility") or "",
    }
    if answers.get("adequate") in ("yes", "no"):
        payload["oral_analgesia_adequate"] = answers["adequate"] == "yes"
    if answers.get("symptoms_changed") in ("yes", "no"):
        payload["symptoms_changed"] = answers["symptoms_changed"] == "yes"
    return parse_model(PainAssessment, payload)
