"""Cohort quality measures and the workload forecast over HTTP.

Counts only, never a patient, except the drill-down (who did not meet a measure), which is for
clinicians. ``admin`` reads no patient data, and a small cohort's counts are close to it, so the
reports are for viewers, coordinators and physicians; the ``Measure`` definitions are for anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from carepath.api.deps import Anyone, Clinician, Reader, Service
from carepath.fhir_measures import measures_bundle, report_bundle
from carepath.measures import as_csv, drill_down, period, report, weekly_load
from carepath.service import CarepathService
from db.measures import Period

router = APIRouter(tags=["measures"])


def _pathway(service: CarepathService, pathway: str | None) -> Any:
    return service.pathway(pathway)  # an unknown one is 422 naming ``pathway``


@dataclass(frozen=True)
class Chosen:
    """The report's pathway and cohort, from the query (bad dates are 422 naming their parameter)."""

    pathway: Any
    which: Period


def _chosen(
    service: Service,
    start: Annotated[str | None, Query(alias="from", description="first day 0 of the cohort, YYYY-MM-DD")] = None,
    to: Annotated[str | None, Query(description="last day 0 of the cohort, YYYY-MM-DD", max_length=10)] = None,
    as_of: Annotated[str | None, Query(description="observed up to this day (default today)", max_length=10)] = None,
    pathway: str | None = None,
) -> Chosen:
    return Chosen(_pathway(service, pathway), period(service.today(), start, to, as_of))


Cohort = Annotated[Chosen, Depends(_chosen)]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/measures")
async def measures(
    _: Reader,
    service: Service,
    cohort: Cohort,
    by: Annotated[str | None, Query(pattern="^month$", description="month: each month of enrollment too")] = None,
) -> dict[str, Any]:
    """The cohort's measures, keyed by measure id: episodes whose day 0 lies in [from, to]
    (default: all), each observed to ``as_of`` (default today) or its withdrawal."""
    which = cohort.which
    found = await run_in_threadpool(report, service.engine, cohort.pathway, which)
    if by == "month":
        return {"measures": found.totals(), "months": found.months()}
    return found.totals()


@router.get("/measures.csv", response_class=PlainTextResponse)
async def measures_csv(
    _: Reader,
    service: Service,
    cohort: Cohort,
) -> PlainTextResponse:
    """The same report as CSV: the whole cohort, then each month of enrollment."""
    which = cohort.which
    found = await run_in_threadpool(report, service.engine, cohort.pathway, which)
    headers = {"Content-Disposition": f'attachment; filename="measures-{which.as_of}.csv"'}
    return PlainTextResponse(as_csv(found), media_type="text/csv", headers=headers)


@router.get("/measures/{measure_id}/not-met")
async def not_met(
    measure_id: str,
    _: Clinician,
    service: Service,
    cohort: Cohort,
) -> list[dict[str, Any]]:
    """The eligible episodes (or items) that did not meet the measure (at most 500)."""
    rows = await run_in_threadpool(drill_down, service.engine, cohort.pathway, cohort.which, measure_id)
    return [{k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()} for row in rows]


@router.get("/measures/fhir")
async def measures_fhir(
    request: Request,
    _: Reader,
    service: Service,
    cohort: Cohort,
) -> dict[str, Any]:
    """A FHIR R4 Bundle of summary MeasureReports, one per measure."""
    which = cohort.which
    found = await run_in_threadpool(report, service.engine, cohort.pathway, which)
    first = which.start or found.counts.first_day or which.as_of
    return report_bundle(_base(request), found, first, which.end or which.as_of, datetime.now(UTC))


@router.get("/measures/fhir/Measure")
def measure_definitions(request: Request, _: Anyone, service: Service, pathway: str | None = None) -> dict[str, Any]:
    """The FHIR R4 Measure resources the reports refer to (definitions: no patient data)."""
    return measures_bundle(_base(request), _pathway(service, pathway).measures())


@router.get("/forecast")
async def forecast(_: Reader, service: Service, weeks: Annotated[int, Query(ge=1, le=52)] = 12) -> list[dict[str, Any]]:
    """Per coming week (week 1 starts today): how many of each code the running episodes' clocks
    will raise, by assignee, if nothing else is recorded meanwhile."""
    return await run_in_threadpool(weekly_load, service.engine, service.today(), weeks)
