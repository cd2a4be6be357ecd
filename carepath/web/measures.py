"""The measures page ``/ui/measures``: each cohort measure as a bar in its band's colour with its
numbers, the trend by month of enrollment (server-rendered SVG, no script), who did not meet a
measure (clinicians only; viewers see the counts), a CSV download, and the workload forecast.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from carepath.access import CLINICIANS, READERS
from carepath.errors import InvalidInput
from carepath.measures import as_csv, drill_down, period, report, weekly_load
from carepath.web.guard import render
from carepath.web.handling import signed_in, signed_in_context

router = APIRouter(include_in_schema=False)
FORECAST_WEEKS = 8
ROLE_WORDS = {"coordinator": "Care coordinator", "physician": "Physician", "patient": "Patient"}
BAND_WORDS = {"red": "below 50 %", "amber": "50-80 %", "green": "above 80 %"}


def _percent(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate * 100:.0f} %"


def _trend(months: list[dict[str, Any]], measure_id: str) -> list[dict[str, Any]]:
    """One column per month of enrollment: its rate (or median) and how many it counts."""
    width = 28
    columns = []
    for n, month in enumerate(months):
        values = month["measures"][measure_id]
        if values["scoring"] == "median":  # NRS 0-10 on the same 60 px scale
            figure, scale = values["median"], 6.0
            shown = "n/a" if figure is None else f"{figure:g}"
        else:
            figure, scale = values["rate"], 60.0
            shown = _percent(figure)
        size = values.get("denominator", values.get("population"))
        columns.append(
            {
                "x": 34 + n * width,
                "height": None if figure is None else round(figure * scale, 1),
                "band": values.get("band") or "none",
                "month": month["month"][2:],
                "label": f"{month['month']}: {shown} (of {size})",
                "shown": shown,
            }
        )
    return columns


def _forecast_table(rows: list[dict[str, Any]], titles: dict[str, str]) -> dict[str, Any]:
    weeks = sorted({r["week_start"] for r in rows})
    lines: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        lines.setdefault((r["assignee"], r["code"]), {})[r["week_start"]] = r["count"]
    return {
        "weeks": weeks,
        "lines": [
            {
                "role": ROLE_WORDS.get(role, role),
                "code": code,
                "title": titles.get(code, code),
                "counts": [by_week.get(w, 0) for w in weeks],
            }
            for (role, code), by_week in sorted(lines.items())
        ],
    }


def _page_context(request: Request, who: Any) -> dict[str, Any]:
    service = request.app.state.service
    query = request.query_params
    pathway = service.pathway()
    which = period(service.today(), query.get("from"), query.get("to"), query.get("as_of"))
    found = report(service.engine, pathway, which)
    months = found.months()
    definition = pathway.definition()
    titles = {code: pathway.label(definition, code) for code in definition.actions}
    cards = []
    for spec in found.measures.measures:
        values = found.totals()[spec.id]
        cards.append(
            {
                "spec": spec,
                "values": values,
                "percent": _percent(values.get("rate")),
                "bar": 0 if values.get("rate") is None else round(values["rate"] * 300),
                "band_words": BAND_WORDS.get(values.get("band") or "", ""),
                "trend": _trend(months, spec.id),
            }
        )
    chosen = query.get("measure")
    missed = None
    if chosen and who.role in CLINICIANS:
        missed = {"spec": found.measures.measure(chosen), "rows": drill_down(service.engine, pathway, which, chosen)}
    return {
        "cards": cards,
        "which": which,
        "cohort": found.counts.cohort,
        "missed": missed,
        "forecast": _forecast_table(weekly_load(service.engine, service.today(), FORECAST_WEEKS), titles),
        "query": {k: query.get(k) or "" for k in ("from", "to", "as_of")},
        "csv_query": request.url.query,
    }


@router.get("/ui/measures")
async def measures_page(request: Request) -> Response:
    who = await run_in_threadpool(signed_in, request, READERS, "the measures")
    if isinstance(who, Response):
        return who
    try:
        context = await run_in_threadpool(_page_context, request, who)
    except (InvalidInput, LookupError) as exc:
        return render("message.html", 422, request, heading="Cannot show these measures", message=str(exc), who=who)
    return render("measures.html", 200, request, **signed_in_context(request, who), **context)


@router.get("/ui/measures.csv")
async def measures_csv(request: Request) -> Response:
    who = await run_in_threadpool(signed_in, request, READERS, "the measures")
    if isinstance(who, Response):
        return who
    service = request.app.state.service
    query = request.query_params
    try:
        which = period(service.today(), query.get("from"), query.get("to"), query.get("as_of"))
    except InvalidInput as exc:
        return render("message.html", 422, request, heading="Cannot export these measures", message=str(exc), who=who)
    found = await run_in_threadpool(report, service.engine, service.pathway(), which)
    headers = {"Content-Disposition": f'attachment; filename="measures-{which.as_of}.csv"'}
    return PlainTextResponse(as_csv(found), media_type="text/csv", headers=headers)
