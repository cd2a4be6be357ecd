"""The cohort measures report and the workload forecast, one computation for every consumer:
``carepath simulate --measures``, ``GET /measures`` (and its FHIR form), ``/ui/measures`` and
``carepath forecast``.

The measures are the pathway's own declaration (``Pathway.measures()``); the counting is done by
the database (``db.measures``); this module turns counts into what MEASURES.md names (rates,
bands, not-eligible counts), reads a report's query parameters, and writes the CSV.
"""

from __future__ import annotations

import csv
import io
import logging
import threading
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Engine

from carepath.engine.measures import Counts, MeasureSet, result
from carepath.engine.pathway import Pathway
from carepath.errors import FieldError, InvalidInput
from db.measure_facts import fill
from db.measures import MeasureCounts, Observed, Period, forecast, measure_counts, not_met, store_version

MAX_FORECAST_WEEKS = 52
FILL_LOG_EVERY = 10_000  # episodes between two progress lines of a fill

log = logging.getLogger(__name__)


def fill_kept_facts(engine: Engine, pathways: list[Pathway]) -> int:
    """Fill the kept per-episode facts of each pathway's measures for the episodes stored before
    them (after an upgrade, or a new declaration), with progress in the log; returns the episodes
    filled. Nothing to fill is one quick read."""
    total = 0
    for pathway in pathways:

        def progress(done: int, pathway_id: str = pathway.id) -> None:
            if done % FILL_LOG_EVERY == 0:
                log.info("measures of %s: facts filled for %d stored episodes so far", pathway_id, done)

        done = fill(engine, pathway.measures(), progress)
        if done:
            log.info("measures of %s: facts filled for all %d stored episodes", pathway.id, done)
        total += done
    return total


def fill_kept_facts_in_background(engine: Engine, pathways: list[Pathway]) -> threading.Thread:
    """Start the fill beside the worker, so the first report after an upgrade need not wait for it
    (a report still fills what is missing itself). A daemon thread: stopping the worker never waits
    for it, and a fill cut short is done again from the start next time."""

    def run() -> None:
        try:
            fill_kept_facts(engine, pathways)
        except Exception as exc:  # the database unreachable: the first report fills instead
            log.warning("measures: facts not filled at start (%s); the first report fills them", exc)

    thread = threading.Thread(target=run, name="measure-facts-fill", daemon=True)
    thread.start()
    return thread


@dataclass(frozen=True)
class Report:
    """A cohort's measures: the whole cohort and each month of enrollment."""

    measures: MeasureSet
    counts: MeasureCounts

    def totals(self) -> dict[str, dict[str, Any]]:
        return _results(self.measures, self.counts.total)

    def months(self) -> list[dict[str, Any]]:
        return [
            {"month": month, "episodes": self.counts.sizes[month], "measures": _results(self.measures, counts)}
            for month, counts in self.counts.months.items()
        ]


def _results(measures: MeasureSet, counts: dict[str, Counts]) -> dict[str, dict[str, Any]]:
    return {spec.id: result(spec, counts.get(spec.id, Counts())) for spec in measures.measures}


# A live report is kept until the store changes (a new audit entry) and at most REPORT_TTL
# seconds (a repair by `carepath reconcile` writes no audit entry): counting every episode's
# measures is the one read here that grows with the store (seconds at 100,000 episodes).
REPORT_TTL = 300.0
_reports: dict[tuple[str, str, Period, int], tuple[float, Report]] = {}


def report(engine: Engine, pathway: Pathway, which: Period | Observed) -> Report:
    measures = pathway.measures()
    if isinstance(which, Observed):  # a simulated cohort: counted once, never kept
        return Report(measures, measure_counts(engine, measures, which))
    key = (str(engine.url), pathway.id, which, store_version(engine))
    now = time.monotonic()
    held = _reports.get(key)
    if held is None or held[0] < now:
        if len(_reports) > 100:
            _reports.clear()
        held = _reports[key] = (now + REPORT_TTL, Report(measures, measure_counts(engine, measures, which)))
    return held[1]


def drill_down(engine: Engine, pathway: Pathway, which: Period | Observed, measure_id: str) -> list[dict[str, Any]]:
    """Who did not meet ``measure_id`` (eligible only): for clinicians."""
    try:
        return not_met(engine, pathway.measures(), which, measure_id)
    except LookupError as exc:
        raise InvalidInput.one("measure", str(exc)) from None


def period(today: date, start: str | None, end: str | None, as_of: str | None) -> Period:
    """A report period from query parameters (ISO dates); bad input names its parameter."""
    errors: list[FieldError] = []

    def parsed(name: str, value: str | None) -> date | None:
        if value is None or value == "":
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            errors.append(FieldError(name, f"must be a date YYYY-MM-DD, not {value[:40]!r}"))
            return None

    first, last, when = parsed("from", start), parsed("to", end), parsed("as_of", as_of)
    if first and last and last < first:
        errors.append(FieldError("to", f"must not be before from ({first})"))
    if errors:
        raise InvalidInput(errors)
    return Period(as_of=when or today, start=first, end=last)


def weekly_load(engine: Engine, today: date, weeks: int) -> list[dict[str, Any]]:
    """The running episodes' coming items per week, code and assignee."""
    if not 1 <= weeks <= MAX_FORECAST_WEEKS:
        raise InvalidInput.one("weeks", f"must be between 1 and {MAX_FORECAST_WEEKS}")
    return forecast(engine, today, weeks)


CSV_FIELDS = [
    "month",
    "measure",
    "title",
    "numerator",
    "denominator",
    "population",
    "not_eligible",
    "rate",
    "band",
    "median",
]


def as_csv(report: Report) -> str:
    """One row per measure for the whole cohort (month ``all``), then one per month."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    sections = [("all", report.totals())] + [(m["month"], m["measures"]) for m in report.months()]
    for month, results in sections:
        for measure_id, values in results.items():
            writer.writerow({"month": month, "measure": measure_id, **values})
    return out.getvalue()
