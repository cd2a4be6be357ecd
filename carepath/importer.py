"""Bulk import: many enrollments from JSON lines, each a durable workflow start (no wait for the baseline).

Each line is one enrollment, exactly what ``POST /episodes`` takes. A patient is enrolled through
``CarepathService.enroll(..., wait=False)``: the same reservation row and deterministic workflow id
as an interactive enrollment, so the crash-safety guarantee holds (a reservation no workflow backs
is released by the next import or the sweep), and the import is idempotent per patient ref and
resumable: a re-run skips patients already active or being enrolled and enrolls the rest.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from carepath.engine.inputs import EnrollmentCore
from carepath.engine.pathway import Pathway
from carepath.errors import InvalidInput
from carepath.service import CarepathService, Conflict, Unavailable
from workflows.client import UNREACHABLE

# Starts in flight at once: enough to hide the round trip to a busy server (measured on the dev
# server: 64 gave 0.60x bare start_workflow where 32 gave 0.38-0.54x), well under its 1,200
# concurrent waits (ENGINEERING.md); each holds one database transaction at a time.
CONCURRENCY = 64
_EPISODE_IN = re.compile(r"\(([0-9a-f]{32})\)")


class ImportedLine(BaseModel):
    line: int
    episode_id: str


class RejectedLine(BaseModel):
    line: int
    field: str
    message: str


class ImportReport(BaseModel):
    enrolled: list[ImportedLine] = []
    already_active: list[ImportedLine] = []  # the patient has an active episode, or one being enrolled
    rejected: list[RejectedLine] = []  # bad input: the field named, nothing enrolled
    failed: list[RejectedLine] = []  # Temporal or the database unavailable: run the import again

    def summary(self) -> str:
        return (
            f"{len(self.enrolled)} enrolled, {len(self.already_active)} already active, "
            f"{len(self.rejected)} rejected, {len(self.failed)} failed"
        )


def parse_lines(pathway: Pathway, lines: Iterable[str]) -> tuple[list[tuple[int, EnrollmentCore]], list[RejectedLine]]:
    """``pathway``'s enrollments by line number (1-based; blank lines skipped), and the lines that are not one."""
    parsed: list[tuple[int, EnrollmentCore]] = []
    rejected: list[RejectedLine] = []
    first_line: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            enrollment = pathway.parse_enrollment(json.loads(text))
            # Two lines of one patient would race for its reservation (the second could release the
            # first's before its workflow starts): the first line enrolls, the others are refused.
            first = first_line.setdefault(enrollment.patient_ref, number)
            if first != number:
                rejected.append(RejectedLine(line=number, field="patient.ref", message=f"repeats line {first}"))
                continue
            parsed.append((number, enrollment))
        except (ValueError, RecursionError) as exc:
            if isinstance(exc, InvalidInput):
                rejected += [RejectedLine(line=number, field=e.field, message=e.message) for e in exc.errors]
            else:
                rejected.append(RejectedLine(line=number, field="line", message=f"is not valid JSON ({exc})"))
    return parsed, rejected


async def import_enrollments(
    service: CarepathService,
    lines: Iterable[str],
    actor: str,
    concurrency: int = CONCURRENCY,
    progress: Callable[[int], Callable[[int], Any]] | None = None,
    pathway_id: str | None = None,
) -> ImportReport:
    """Enroll every valid line in ``pathway_id`` (default: the default pathway); ``progress(total)``
    gives the callback told of each patient done."""
    pathway = service.pathway(pathway_id)
    parsed, rejected = parse_lines(pathway, lines)
    report = ImportReport(rejected=rejected)
    advance = progress(len(parsed)) if progress is not None else None
    queue = iter(parsed)
    unreachable: list[str] = []  # set once Temporal is found unreachable: the rest is not tried

    async def one(number: int, enrollment: EnrollmentCore) -> None:
        if unreachable:
            report.failed.append(RejectedLine(line=number, field="", message=f"not tried: {unreachable[0]}"))
            return
        try:
            enrolled = await service.enroll(enrollment, actor, pathway.id, wait=False)
        except InvalidInput as exc:
            report.rejected += [RejectedLine(line=number, field=e.field, message=e.message) for e in exc.errors]
        except Conflict as exc:
            found = _EPISODE_IN.search(exc.error.message)
            report.already_active.append(ImportedLine(line=number, episode_id=found.group(1) if found else ""))
        except Unavailable as exc:
            if exc.cause == UNREACHABLE:
                unreachable.append(exc.cause)
            report.failed.append(RejectedLine(line=number, field="", message=exc.error.message[:300]))
        except Exception as exc:  # unavailable: this patient is retried by the next run
            report.failed.append(RejectedLine(line=number, field="", message=f"{type(exc).__name__}: {exc}"[:300]))
        else:
            report.enrolled.append(ImportedLine(line=number, episode_id=enrolled.episode_id))

    async def lane() -> None:
        for number, enrollment in queue:  # the lanes share one iterator: each line is taken once
            await one(number, enrollment)
            if advance is not None:
                advance(1)

    await asyncio.gather(*(lane() for _ in range(max(1, concurrency))))
    for part in (report.enrolled, report.already_active, report.rejected, report.failed):
        part.sort(key=lambda entry: entry.line)
    return report


async def run_import(service: CarepathService, path: str, actor: str, concurrency: int, show_progress: bool) -> Any:
    """For ``carepath import``: the file's lines, with a progress bar on stderr."""
    from tqdm import tqdm

    with open(path, encoding="utf-8") as source:
        lines = source.read().splitlines()
    bars: list[Any] = []

    def bar(total: int) -> Callable[[int], Any]:
        bars.append(tqdm(total=total, unit="patient", file=sys.stderr, disable=not show_progress))
        return bars[0].update

    try:
        return await import_enrollments(service, lines, actor, concurrency, progress=bar)
    finally:
        for made in bars:
            made.close()
