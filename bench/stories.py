"""Varied, valid patient-year scenarios from a seed, in the scenario format (shared/pathway/SCENARIOS.md).

    generate(n, seed) -> list[dict]      # deterministic per (n, seed); story i is the same for any n > i
    .venv/bin/python bench/stories.py --n 5 --seed 1 [--out DIR | --json]   # digest, files or JSON

Every event type of the format appears across a few dozen stories: pain assessments (NRS trend,
analgesics, mobility, symptom changes, opioid effects), medication started/stopped, denosumab
starts and doses, imaging with and without new fractures, hospital admissions, parenteral
narcotics, red flags, notes, an occasional withdrawal, an occasional back-dated ``enroll_day``,
and an occasional deliberately invalid event (which the simulator must reject on its own while
the story goes on). ``expected_rejection`` tells a benchmark which rejections are intended.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

OSTEO = ["ibandronate", "strontium_ranelate", "risedronate", "alendronate", "zoledronic_acid", "teriparatide"]
DENOSUMAB = "denosumab"
ANALGESICS = ["acetaminophen", "nsaid", "opioid", "calcitonin"]
RED_FLAGS = ["neurological_deficit", "cord_compression", "instability", "pathological_fracture"]
MODALITIES = ["xray", "ct", "mri"]
WITHDRAW_REASONS = ["recovered", "transferred", "declined", "deceased", "other"]
MILESTONE_DAYS = (28, 42, 56, 91)
UNTIL_DAY = 400

# Deliberately invalid events: each carries this note author or an impossible value, so the
# benchmark can tell an intended rejection from a bug.
INVALID_MARK = "bench-invalid"


def _invalid_events(rng: random.Random, day: int) -> dict[str, Any]:
    return rng.choice(
        [
            {"day": day, "type": "pain_assessment", "nrs": 11, "analgesics": ["nsaid"]},  # out of range
            {"day": day, "type": "medication_started", "agent": "aspirin"},  # unknown agent
            {"day": day, "type": "red_flag", "flag": "headache"},  # unknown red flag
            {"day": day, "type": "imaging", "modality": "pet"},  # unknown modality
            {"day": day, "type": "note", "text": "   ", "author": INVALID_MARK},  # blank text
            {"day": day, "type": "teleport"},  # unknown event type
        ]
    )


def expected_rejection(story: dict[str, Any], rejection: dict[str, Any]) -> bool:
    """Whether a ``rejected`` entry of the simulator's output is one this generator intended."""
    if "no further events are accepted" in rejection["error"]:
        return True  # submitted after the episode was withdrawn or completed (SCENARIOS.md)
    event = story["events"][rejection["index"]]
    return is_invalid(event) or event["day"] < story["enroll_day"]


def is_invalid(event: dict[str, Any]) -> bool:
    return (
        event.get("nrs") == 11
        or event.get("agent") == "aspirin"
        or event.get("flag") == "headache"
        or event.get("modality") == "pet"
        or event.get("author") == INVALID_MARK
        or event.get("type") == "teleport"
    )


def _assessment(rng: random.Random, day: int, nrs: int) -> dict[str, Any]:
    if nrs <= 2 and rng.random() < 0.6:
        analgesics: list[str] = []
    else:
        analgesics = sorted(rng.sample(ANALGESICS, rng.choice([1, 1, 2, 3])))
    opioid_effects = (
        sorted(rng.sample(["sedation", "nausea", "fall"], rng.choice([0, 0, 1, 2]))) if "opioid" in analgesics else []
    )
    return {
        "day": day,
        "type": "pain_assessment",
        "nrs": nrs,
        "analgesics": analgesics,
        "oral_analgesia_adequate": rng.random() < 0.75,
        "mobility": rng.choice(["ambulatory", "ambulatory", "ambulatory", "limited", "bed_rest"]),
        "symptoms_changed": rng.random() < 0.08,
        "opioid_effects": opioid_effects,
    }


def story(rng: random.Random, index: int) -> dict[str, Any]:
    # Mostly enrolled on day 0; sometimes back-dated (identified days to months before enrollment).
    enroll_day = rng.choice([0] * 7 + [rng.randint(1, 27), rng.randint(28, 120), rng.randint(121, 364)])
    pain = rng.randint(0, 10)
    wants_denosumab = rng.random() < 0.25
    therapy = None
    if rng.random() < 0.3:
        if wants_denosumab:
            therapy = {"agent": DENOSUMAB, "last_dose_day": rng.randint(-170, 0)}
        else:
            therapy = {"agent": rng.choice(OSTEO), "last_dose_day": rng.choice([None, rng.randint(-300, 0)])}
    events: list[dict[str, Any]] = []

    def day_between(lo: int, hi: int) -> int:
        return rng.randint(max(lo, enroll_day), max(hi, enroll_day))

    if therapy is None and rng.random() < 0.85:
        agent = DENOSUMAB if wants_denosumab else rng.choice(OSTEO)
        events.append({"day": enroll_day + rng.randint(0, 12), "type": "medication_started", "agent": agent})
    # Pain trends down for most, stalls or rises for some (not resolving, evaluation, augmentation).
    trend, drift = pain, rng.choice([-2, -2, -1, -1, 0, 1])
    for milestone in MILESTONE_DAYS:
        if milestone >= enroll_day and rng.random() < 0.85:
            trend = max(0, min(10, trend + drift + rng.randint(-1, 1)))
            events.append(_assessment(rng, milestone + rng.randint(0, 8), trend))
    if rng.random() < 0.3:  # an unscheduled assessment
        events.append(_assessment(rng, day_between(1, 200), max(0, min(10, trend + rng.randint(-2, 3)))))
    extras = [
        (0.2, lambda d: {"day": d, "type": "medication_started", "agent": rng.choice(ANALGESICS)}),
        (0.15, lambda d: {"day": d, "type": "medication_stopped", "agent": rng.choice(ANALGESICS)}),
        (0.05, lambda d: {"day": d, "type": "medication_stopped", "agent": rng.choice(OSTEO)}),
        (
            0.25,
            lambda d: {
                "day": d,
                "type": "imaging",
                "modality": rng.choice(MODALITIES),
                "new_fracture": rng.random() < 0.25,
                "marrow_edema": rng.random() < 0.5,
            },
        ),
        (0.08, lambda d: {"day": d, "type": "hospital_admission"}),
        (0.06, lambda d: {"day": d, "type": "parenteral_narcotics"}),
        (0.06, lambda d: {"day": d, "type": "red_flag", "flag": rng.choice(RED_FLAGS)}),
        (
            0.35,
            lambda d: {
                "day": d,
                "type": "note",
                "text": rng.choice(["phoned; stable", "walking with a frame", "asked about bracing"]),
                "author": rng.choice(["coordinator", "dr. lee"]),
            },
        ),
        (0.06, lambda d: _invalid_events(rng, d)),
    ]
    for chance, make in extras:
        if rng.random() < chance:
            events.append(make(day_between(0, 300)))
    if wants_denosumab:
        for dose_day in (182, 364):
            if dose_day > enroll_day and rng.random() < 0.8:
                events.append({"day": dose_day + rng.randint(-5, 12), "type": "dose_given", "agent": DENOSUMAB})
        if rng.random() < 0.1:
            events.append({"day": day_between(200, 380), "type": "medication_stopped", "agent": DENOSUMAB})
    if enroll_day > 0 and rng.random() < 0.1:  # before enrollment: the episode does not exist yet
        events.append({"day": rng.randint(0, enroll_day - 1), "type": "note", "text": "too early", "author": "bench"})
    if rng.random() < 0.05:
        events.append({"day": day_between(100, 390), "type": "withdraw", "reason": rng.choice(WITHDRAW_REASONS)})
    events.sort(key=lambda e: e["day"])  # stable: one day's events keep their order
    studies = rng.choice([0, 1, 1, 2])
    imaging = [{"day": rng.randint(-30, 0), "modality": rng.choice(MODALITIES)} for _ in range(studies)]
    return {
        "name": f"generated story {index}",
        "enroll_day": enroll_day,
        "until_day": UNTIL_DAY,
        "enrollment": {
            "patient": {"ref": f"bench-{index}", "age": rng.randint(50, 95), "sex": rng.choice(["female", "male"])},
            "fracture": {
                "levels": sorted(rng.sample(["L1", "L2", "L3", "L4", "L5"], rng.choice([1, 1, 1, 2]))),
                "acute_injury": rng.random() < 0.4,
                "correlating_symptoms": rng.random() < 0.4,
            },
            "pain_nrs": pain,
            "analgesics": sorted(rng.sample(ANALGESICS, rng.randint(0, 2))),
            "contraindications": sorted(rng.sample(["nsaid", "opioid"], rng.choice([0, 0, 0, 1, 2]))),
            "osteoporosis_therapy": therapy,
            "calcium_vitamin_d": rng.random() < 0.4,
            "imaging": imaging,
            "red_flags": rng.sample(RED_FLAGS, 1) if rng.random() < 0.05 else [],
        },
        "events": events,
    }


def generate(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` stories; story ``i`` depends only on (seed, i), so a larger ``n`` extends a smaller one."""
    return [story(random.Random(f"{seed}:{i}"), i) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write story-NNNNN.json files here")
    parser.add_argument("--json", action="store_true", help="print the stories as one JSON list (summary on stderr)")
    args = parser.parse_args()
    stories = generate(args.n, args.seed)
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(stories):
            (folder / f"story-{i:05d}.json").write_text(json.dumps(item, indent=1))
    if args.json:
        print(json.dumps(stories, indent=1))
    else:
        for item in stories:
            kinds = ",".join(e["type"] for e in item["events"])
            print(f"{item['name']}: enroll_day {item['enroll_day']}, pain {item['enrollment']['pain_nrs']}, {kinds}")
    types: dict[str, int] = {}
    for item in stories:
        for event in item["events"]:
            types[event["type"]] = types.get(event["type"], 0) + 1
    backdated = sum(1 for s in stories if s["enroll_day"] > 0)
    invalid = sum(is_invalid(e) for s in stories for e in s["events"])
    print(
        f"SUMMARY: {args.n} stories (seed {args.seed}), {sum(types.values())} events, {backdated} back-dated, "
        f"{invalid} deliberately invalid; by type {dict(sorted(types.items()))}",
        file=sys.stderr if args.json else sys.stdout,
    )


if __name__ == "__main__":
    main()
