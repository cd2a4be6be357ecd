"""The measures in FHIR R4: a ``Measure`` per declared measure and a summary ``MeasureReport``
per measure over a cohort (initial-population, denominator, numerator, measureScore).

Validated with ``fhir.resources`` R4B (Measure and MeasureReport match R4 for what we use). No
patient appears: a summary report carries counts only.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from carepath.engine.measures import MeasureSet, MeasureSpec
from carepath.measures import Report

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
SCORING_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-scoring"
SCORING = {"proportion": "proportion", "share": "proportion", "median": "continuous-variable"}


def measure_url(base: str, spec: MeasureSpec) -> str:
    return f"{base}/measures/fhir/Measure/{spec.id}"


def _population(code: str, count: int | None = None, criteria: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}}
    if count is not None:
        entry["count"] = count
    if criteria is not None:
        entry["criteria"] = {"language": "text/plain", "expression": criteria}
    return entry


def measure_resource(base: str, pathway: str, spec: MeasureSpec) -> dict[str, Any]:
    unit = "timeline items" if spec.items is not None else "episodes"
    if spec.scoring == "median":
        populations = [
            _population("initial-population", criteria=f"{unit} of the cohort (day 0 in the report's period)"),
            _population("measure-population", criteria="eligible: " + spec.description),
        ]
    else:
        populations = [
            _population("initial-population", criteria=f"{unit} of the cohort observed inside the report"),
            _population("denominator", criteria="eligible: the measure's window has passed inside the observation"),
            _population("numerator", criteria=spec.description),
        ]
    return {
        "resourceType": "Measure",
        "id": spec.id.replace("_", "-"),
        "url": measure_url(base, spec),
        "name": spec.id,
        "title": spec.title,
        "status": "active",
        "description": spec.description,
        "purpose": spec.reference or None,
        "subjectCodeableConcept": {"text": f"episodes of pathway {pathway}"},
        "scoring": {"coding": [{"system": SCORING_SYSTEM, "code": SCORING[spec.scoring]}]},
        "group": [{"population": populations}],
    }


def measures_bundle(base: str, measures: MeasureSet) -> dict[str, Any]:
    entries = [
        {"fullUrl": measure_url(base, spec), "resource": measure_resource(base, measures.pathway, spec)}
        for spec in measures.measures
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    Bundle.model_validate(bundle)
    return bundle


def _group(spec: MeasureSpec, values: dict[str, Any]) -> dict[str, Any]:
    initial = values["not_eligible"] + values.get("denominator", values.get("population", 0))
    if spec.scoring == "median":
        group: dict[str, Any] = {
            "population": [
                _population("initial-population", initial),
                _population("measure-population", values["population"]),
            ]
        }
        if values["median"] is not None:
            group["measureScore"] = {"value": values["median"], "unit": "NRS"}
        return group
    eligible = values.get("denominator", values.get("population", 0))
    group = {
        "population": [
            _population("initial-population", initial),
            _population("denominator", eligible),
            _population("numerator", values["numerator"]),
        ]
    }
    if values["rate"] is not None:
        group["measureScore"] = {"value": round(values["rate"], 6)}
    return group


def report_bundle(base: str, report: Report, start: date, end: date, now: datetime) -> dict[str, Any]:
    """One summary MeasureReport per measure, as a validated ``collection`` Bundle."""
    totals = report.totals()
    entries = []
    for spec in report.measures.measures:
        resource = {
            "resourceType": "MeasureReport",
            "id": spec.id.replace("_", "-"),
            "status": "complete",
            "type": "summary",
            "measure": measure_url(base, spec),
            "date": now.isoformat(),
            "period": {"start": start.isoformat(), "end": end.isoformat()},
            "group": [_group(spec, totals[spec.id])],
        }
        entries.append({"resource": resource})
    bundle = {"resourceType": "Bundle", "type": "collection", "timestamp": now.isoformat(), "entry": entries}
    Bundle.model_validate(bundle)
    return bundle
