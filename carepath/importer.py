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
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

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
# One line is one enrollment (well under 2 KB); a line over this is refused by number, not read.
MAX_LINE_BYTES = 65_536
_EPISODE_IN = re.compile(r"\(([0-9a-f]{32})\)")


# A report holds one entry a line: slotted dataclasses take about 90 bytes each where a pydantic
# model takes about 520 (measured on 100,000), which is what a large import keeps in memory.
@dataclass(slots=True, frozen=True)
class ImportedLine:
    line: int
    episode_id: str


@dataclass(slots=True, frozen=True)
class RejectedLine:
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

    def in_line_order(self) -> ImportReport:
        for part in (self.enrolled, self.already_active, self.rejected, self.failed):
            part.sort(key=lambda entry: entry.line)
        return self


class ImportCut(Exception):
    """The body stopped before its end: over the import's total limit, or the sender went away.

    The lines read before it were imported; ``report`` (set once they are done) says how.
    """

    def __init__(self, reason: Literal["too_large", "cut_short"], message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.report: ImportReport | None = None


Progress = Callable[[int], Any]
Queue = asyncio.Queue[tuple[int, EnrollmentCore] | None]
# A line's number (1-based) and its text, or why it could not be read (too long, not UTF-8).
Line = tuple[int, "str | RejectedLine"]


async def numbered(lines: Iterable[str]) -> AsyncIterator[Line]:
    """Lines already in memory (a list of JSON texts), numbered from 1."""
    for number, text in enumerate(lines, start=1):
        yield number, text


async def split_lines(chunks: AsyncIterable[bytes], max_line_bytes: int = MAX_LINE_BYTES) -> AsyncIterator[Line]:
    """The lines of a byte stream as its chunks arrive, holding at most one line and one chunk.

    A line is what ends at ``\\n`` (a ``\\r`` before it is dropped), and so is what follows the last
    one. A line over ``max_line_bytes`` is skipped to its end and reported by number; a line that is
    not UTF-8 is reported too. Neither stops the lines after it.
    """
    pending = b""
    overlong = False  # the line being read is over the limit: its bytes are dropped until its end
    number = 0
    async for chunk in chunks:
        *complete, rest = (pending + chunk).split(b"\n")
        for raw in complete:
            number += 1
            yield number, _too_long(max_line_bytes) if overlong else _decoded(raw, max_line_bytes)
            overlong = False
        overlong = overlong or len(rest) > max_line_bytes
        pending = b"" if overlong else rest
    if overlong or pending:
        yield number + 1, _too_long(max_line_bytes) if overlong else _last(_decoded(pending, max_line_bytes))


def _decoded(raw: bytes, max_line_bytes: int) -> str | RejectedLine:
    raw = raw.removesuffix(b"\r")
    if len(raw) > max_line_bytes:
        return _too_long(max_line_bytes)
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark some editors write first
    except UnicodeDecodeError as exc:
        return RejectedLine(line=0, field="line", message=f"is not UTF-8 text (byte {exc.start + 1})")


def _too_long(max_line_bytes: int) -> RejectedLine:
    return RejectedLine(line=0, field="line", message=f"is over {max_line_bytes} bytes, the limit for one line")


class _LastLine(str):
    """The text after the last newline: if it is not JSON, the file was most likely cut short."""


def _last(text: str | RejectedLine) -> str | RejectedLine:
    return _LastLine(text) if isinstance(text, str) else text


def parse_line(
    pathway: Pathway, number: int, text: str, first_line: dict[str, int]
) -> EnrollmentCore | list[RejectedLine]:
    """Line ``number`` as ``pathway``'s enrollment, or why not; ``first_line`` remembers each
    patient's first line, so a patient repeated in the file is refused."""
    try:
        enrollment = pathway.parse_enrollment(json.loads(text))
    except InvalidInput as exc:
        return [RejectedLine(line=number, field=e.field, message=e.message) for e in exc.errors]
    except (ValueError, RecursionError) as exc:
        cut = " and ends the file without a newline: the file looks cut short" if isinstance(text, _LastLine) else ""
        return [RejectedLine(line=number, field="line", message=f"is not valid JSON ({exc}){cut}")]
    # Two lines of one patient would race for its reservation (the second could release the
    # first's before its workflow starts): the first line enrolls, the others are refused.
    first = first_line.setdefault(enrollment.patient_ref, number)
    if first != number:
        return [RejectedLine(line=number, field="patient.ref", message=f"repeats line {first}")]
    return enrollment


class _Enrollments:
    """The lanes' shared work: enroll one line at a time and write its outcome into ``report``."""

    def __init__(self, service: CarepathService, pathway: Pathway, actor: str, report: ImportReport) -> None:
        self.service, self.pathway, self.actor, self.report = service, pathway, actor, report
        self.unreachable: list[str] = []  # set once Temporal is found unreachable: the rest is not tried

    async def one(self, number: int, enrollment: EnrollmentCore) -> None:
        report = self.report
        if self.unreachable:
            report.failed.append(RejectedLine(line=number, field="", message=f"not tried: {self.unreachable[0]}"))
            return
        try:
            enrolled = await self.service.enroll(enrollment, self.actor, self.pathway.id, wait=False)
        except InvalidInput as exc:
            report.rejected += [RejectedLine(line=number, field=e.field, message=e.message) for e in exc.errors]
        except Conflict as exc:
            found = _EPISODE_IN.search(exc.error.message)
            report.already_active.append(ImportedLine(line=number, episode_id=found.group(1) if found else ""))
        except Unavailable as exc:
            if exc.cause == UNREACHABLE:
                self.unreachable.append(exc.cause)
            report.failed.append(RejectedLine(line=number, field="", message=exc.error.message[:300]))
        except Exception as exc:  # unavailable: this patient is retried by the next run
            report.failed.append(RejectedLine(line=number, field="", message=f"{type(exc).__name__}: {exc}"[:300]))
        else:
            report.enrolled.append(ImportedLine(line=number, episode_id=enrolled.episode_id))

    async def lane(self, queue: Queue, advance: Progress) -> None:
        while (item := await queue.get()) is not None:  # None: the reader is done
            await self.one(*item)
            advance(1)


async def import_enrollments(
    service: CarepathService,
    lines: Iterable[str] | AsyncIterable[Line],
    actor: str,
    concurrency: int = CONCURRENCY,
    advance: Progress | None = None,
    pathway_id: str | None = None,
) -> ImportReport:
    """Enroll every valid line in ``pathway_id`` (default: the default pathway), ``concurrency`` at
    a time, reading ``lines`` only as fast as they are enrolled (memory holds a few lines, not the
    file). ``advance(1)`` is called for each non-blank line done. Raises ``ImportCut`` (with the
    report of the lines read) when the lines stop before their end."""
    pathway = service.pathway(pathway_id)
    report = ImportReport()
    enrollments = _Enrollments(service, pathway, actor, report)
    queue: Queue = asyncio.Queue(maxsize=2 * concurrency)
    tell = advance or (lambda _: None)
    lanes = [asyncio.create_task(enrollments.lane(queue, tell)) for _ in range(max(1, concurrency))]
    try:
        await _read(pathway, lines if isinstance(lines, AsyncIterable) else numbered(lines), queue, report, tell)
    except ImportCut as cut:
        cut.report = await _finish(queue, lanes, report)
        raise
    except BaseException:  # cancelled, or a bug: the lanes stop with the import
        for lane in lanes:
            lane.cancel()
        raise
    return await _finish(queue, lanes, report)


async def _finish(queue: Queue, lanes: list[asyncio.Task[None]], report: ImportReport) -> ImportReport:
    """The report once the lanes have enrolled every queued line."""
    for _ in lanes:
        await queue.put(None)
    await asyncio.gather(*lanes)
    return report.in_line_order()


async def _read(
    pathway: Pathway,
    lines: AsyncIterable[Line],
    queue: Queue,
    report: ImportReport,
    advance: Progress,
) -> None:
    """Parse each line and queue its enrollment for the lanes (waiting while the queue is full)."""
    first_line: dict[str, int] = {}
    number = 0
    try:
        async for number, text in lines:
            if isinstance(text, RejectedLine):
                report.rejected.append(replace(text, line=number))
            elif not text.strip():
                continue
            elif isinstance(parsed := parse_line(pathway, number, text, first_line), list):
                report.rejected += parsed
            else:
                await queue.put((number, parsed))
                continue
            advance(1)
    except ImportCut as cut:
        cut.message += f": lines from {number + 1} on were not read (the lines before were imported)"
        raise


def count_lines(path: str) -> int:
    """The non-blank lines of the file at ``path`` (one pass, a line at a time): the progress bar's total."""
    with open(path, "rb") as source:
        return sum(1 for line in source if line.strip())


async def file_chunks(path: str, size: int = 1 << 16) -> AsyncIterator[bytes]:
    """The file at ``path`` in chunks of ``size`` bytes (local reads: quick enough to do inline)."""
    with open(path, "rb") as source:
        while chunk := source.read(size):
            yield chunk


async def run_import(service: CarepathService, path: str, actor: str, concurrency: int, show_progress: bool) -> Any:
    """For ``carepath import``: the file read line by line, with a progress bar of lines on stderr."""
    from tqdm import tqdm

    total = count_lines(path) if show_progress else None
    with tqdm(total=total, unit="line", file=sys.stderr, disable=not show_progress) as bar:
        return await import_enrollments(service, split_lines(file_chunks(path)), actor, concurrency, advance=bar.update)
