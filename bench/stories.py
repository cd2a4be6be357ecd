"""Varied, valid patient-year scenarios from a seed, mixing every event type (SCENARIOS.md format)."""

from __future__ import annotations

import random
from typing import Any

OSTEO = ["ibandronate", "strontium_ranelate", "risedronate", "alendronate", "zoledronic_acid", "teriparatide"]
ANALGESICS = ["acetaminophen", "nsaid", "opioid", "calcitonin"]
RED_FLAGS = ["neurological_deficit", "cord_compression", "instability", "pathological_fracture"]


def _assessment(rng: random.Random, day: int, trend: int) -> dict[str, Any]:
    nrs = max(0, min(10, trend + rng.randint(-2, 2)))
    analgesics = [] if nrs <= 2 and rng.random() < 0.7 else rng.sample(ANALGESICS[:3], rng.randint(1, 2))
    return {
        "day": day,
        "type": "pain_assessment",
        "nrs": nrs,
        "analgesics": analgesics,
        "oral_analgesia_adequate": rng.random() < 0.7,
        "mobility": rng.choice(["ambulatory", "ambulatory", "limited", "bed_rest"]),
        "symptoms_changed": rng.random() < 0.08,
        "opioid_effects": rng.sample(["sedation", "nausea", "fall"], rng.randint(0, 1))
        if "opioid" in analgesics
        else [],
    }


def story(rng: random.Random, index: int) -> dict[str, Any]:
    enroll_day = rng.choice([0] * 8 + [rng.randint(1, 27), rng.randint(28, 120), rng.randint(121, 364)])
    pain = rng.randint(0, 10)
    denosumab = rng.random() < 0.25
    therapy = None
    if rng.random() < 0.3:
        therapy = (
            {"agent": "denosumab", "last_dose_day": rng.randint(-170, 0)}
            if denosumab
            else {"agent": rng.choice(OSTEO), "last_dose_day": None}
        )
    events: list[dict[str, Any]] = []
    if therapy is None and rng.random() < 0.85:
        events.append(
            {
                "day": enroll_day + rng.randint(0, 10),
                "type": "medication_started",
                "agent": "denosumab" if denosumab else rng.choice(OSTEO),
            }
        )
    trend = pain
    for milestone in (28, 42, 56, 91):
        if milestone >= enroll_day and rng.random() < 0.85:
            trend = max(0, trend - rng.randint(0, 3))
            events.append(_assessment(rng, milestone + rng.randint(0, 8), trend))
    extras = [
        (0.15, lambda d: {"day": d, "type": "medication_started", "agent": rng.choice(ANALGESICS)}),
        (0.15, lambda d: {"day": d, "type": "medication_stopped", "agent": rng.choice(ANALGESICS)}),
        (
            0.2,
            lambda d: {
                "day": d,
                "type": "imaging",
                "modality": rng.choice(["xray", "ct", "mri"]),
                "new_fracture": rng.random() < 0.2,
                "marrow_edema": rng.random() < 0.5,
            },
        ),
        (0.08, lambda d: {"day": d, "type": "hospital_admission"}),
        (0.06, lambda d: {"day": d, "type": "parenteral_narcotics"}),
        (0.06, lambda d: {"day": d, "type": "red_flag", "flag": rng.choice(RED_FLAGS)}),
        (0.3, lambda d: {"day": d, "type": "note", "text": "phoned; stable", "author": "coordinator"}),
        (0.05, lambda d: {"day": d, "type": "pain_assessment", "nrs": 11}),  # rejected: out of range
    ]
    for chance, make in extras:
        if rng.random() < chance:
            events.append(make(rng.randint(enroll_day, max(enroll_day, 300))))
    if denosumab:
        for dose in (184, 366):
            if dose > enroll_day and rng.random() < 0.8:
                events.append({"day": dose + rng.randint(0, 10), "type": "dose_given", "agent": "denosumab"})
    if rng.random() < 0.05:
        events.append(
            {
                "day": rng.randint(max(enroll_day, 100), 390),
                "type": "withdraw",
                "reason": rng.choice(["recovered", "transferred", "declined", "deceased", "other"]),
            }
        )
    events.sort(key=lambda e: e["day"])
    return {
        "name": f"generated story {index}",
        "enroll_day": enroll_day,
        "until_day": 400,
        "enrollment": {
            "patient": {"ref": f"bench-{index}", "age": rng.randint(50, 95), "sex": rng.choice(["female", "male"])},
            "fracture": {
                "levels": sorted(rng.sample(["L1", "L2", "L3", "L4", "L5"], rng.randint(1, 2))),
                "acute_injury": rng.random() < 0.4,
                "correlating_symptoms": rng.random() < 0.4,
            },
            "pain_nrs": pain,
            "analgesics": rng.sample(ANALGESICS, rng.randint(0, 2)),
            "contraindications": rng.sample(["nsaid", "opioid"], rng.choice([0, 0, 0, 1, 2])),
            "osteoporosis_therapy": therapy,
            "calcium_vitamin_d": rng.random() < 0.4,
            "imaging": [{"day": rng.randint(-30, 0), "modality": rng.choice(["xray", "ct", "mri"])}],
            "red_flags": rng.sample(RED_FLAGS, 1) if rng.random() < 0.05 else [],
        },
        "events": events,
    }


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [story(rng, i) for i in range(n)]
