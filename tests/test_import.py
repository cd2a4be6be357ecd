"""Bulk import: durable starts that do not wait for the baseline, idempotent per patient, resumable.

On a dev server with the production worker: a JSON-lines file with good, bad and repeated lines
through ``carepath import``, a re-run (nothing doubles), a reservation left by a crashed import
(released and enrolled by the re-run), and ``POST /imports`` with its roles.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepath import cli
from carepath.importer import import_enrollments, split_lines
from db.models import EpisodeRow, TimelineItemRow
from tests.support.live import api_client, served, sqlite_url, start_dev_server
from tests.test_api import enrollment, episodes
from tests.test_enrollment_reservations import ghost, statuses


@pytest.fixture(scope="module")
async def env():
    server = await start_dev_server()
    yield server
    await server.shutdown()


async def all_active(engine: Any, episode_ids: list[str]) -> None:
    """Until each episode's baseline is recorded (active with a timeline): the import did not wait."""
    for _ in range(300):
        with Session(engine) as session:
            active = session.scalar(
                select(func.count()).where(EpisodeRow.id.in_(episode_ids), EpisodeRow.status == "active")
            )
            items = session.scalar(
                select(func.count(func.distinct(TimelineItemRow.episode_id))).where(
                    TimelineItemRow.episode_id.in_(episode_ids)
                )
            )
        if active == items == len(episode_ids):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("baselines never recorded")


async def test_import_command_reports_and_resumes(env, tmp_path, monkeypatch, capsys):
    url = sqlite_url(tmp_path)
    async with api_client(env, url) as live:
        api, service = live.client, live.service
        answer = await api.post("/episodes", json=enrollment("imp-already"))
        assert answer.status_code == 201
        already = answer.json()["episode_id"]
        crashed = ghost(service.engine, "imp-crashed")  # a reservation whose import died before its start
        lines = [
            json.dumps(enrollment("imp-1")),
            json.dumps(enrollment("imp-2", patient={"ref": "imp-2", "age": 130, "sex": "female"})),
            "",
            "{not json",
            json.dumps(enrollment("imp-already")),
            json.dumps(enrollment("imp-3", days_ago=40)),
            json.dumps(enrollment("imp-1")),  # the same patient twice in one file
            json.dumps(enrollment("imp-crashed")),
        ]
        path = tmp_path / "patients.jsonl"
        path.write_text("\n".join(lines) + "\n")
        for name, value in {
            "CAREPATH_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "CAREPATH_DATABASE_URL": url,
            "CAREPATH_TASK_QUEUE": service.task_queue,
            "CAREPATH_ALLOW_UNENCRYPTED": "true",
            "CAREPATH_RESERVATION_TIMEOUT_SECONDS": "60",
        }.items():
            monkeypatch.setenv(name, value)

        assert await asyncio.to_thread(cli.main, ["import", str(path), "--json"]) == 2  # a line was rejected
        captured = capsys.readouterr()
        report = json.loads(captured.out)
        assert [e["line"] for e in report["enrolled"]] == [1, 6, 8], report
        assert [(e["line"], e["episode_id"]) for e in report["already_active"]] == [(5, already)], report
        rejected = [(e["line"], e["field"], e["message"]) for e in report["rejected"]]
        assert [r[:2] for r in rejected] == [(2, "patient.age"), (4, "line"), (7, "patient.ref")], report
        assert rejected[2][2] == "repeats line 1"
        assert report["failed"] == []
        assert "7/7" in captured.err and "line/s" in captured.err  # the progress bar: the 7 non-blank lines
        enrolled = [e["episode_id"] for e in report["enrolled"]]
        await all_active(service.engine, enrolled)
        assert statuses(service.engine, "imp-crashed")[crashed] == "abandoned"  # released, enrolled anew

        # A re-run: every patient is already active, nothing is started twice.
        assert await asyncio.to_thread(cli.main, ["import", str(path), "--no-progress"]) == 2
        out = capsys.readouterr().out
        assert "line 2: rejected: patient.age: must be between 18 and 120" in out, out
        assert out.strip().endswith("0 enrolled, 4 already active, 3 rejected, 0 failed"), out
        with Session(service.engine) as session:
            active = session.scalars(select(EpisodeRow.patient_ref).where(EpisodeRow.status == "active")).all()
        assert sorted(active) == ["imp-1", "imp-3", "imp-already", "imp-crashed"]

        # Bad input at the command line: exit 2 naming what.
        assert cli.main(["import", str(tmp_path / "missing.jsonl")]) == 2
        assert "FILE" in capsys.readouterr().err


async def test_imports_api(env, tmp_path):
    async with api_client(env, sqlite_url(tmp_path)) as live:
        body = "\n".join(json.dumps(enrollment(f"api-imp-{n}")) for n in range(3)) + "\n{}"
        headers = {"content-type": "application/x-ndjson"}
        answer = await live.client.post("/imports", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert [e["line"] for e in report["enrolled"]] == [1, 2, 3]
        assert {e["line"] for e in report["rejected"]} == {4} and report["rejected"][0]["field"], report
        await all_active(live.service.engine, [e["episode_id"] for e in report["enrolled"]])
        again = (await live.client.post("/imports", content=body, headers=headers)).json()
        assert again["enrolled"] == [] and len(again["already_active"]) == 3
        viewer = await live.client.post("/imports", content=body, headers={**headers, **live.auth("viewer")})
        assert viewer.status_code == 403
        bad = await live.client.post("/imports", content=b"\xff\xfe", headers=headers)
        assert bad.status_code == 200 and bad.json()["rejected"] == [
            {"line": 1, "field": "line", "message": "is not UTF-8 text (byte 1)"}
        ]


async def test_import_is_concurrent_and_does_not_wait_for_baselines(env, tmp_path):
    """With no worker polling the import's queue, the import still finishes: starts are durable."""
    async with api_client(env, sqlite_url(tmp_path)) as live:
        service = live.service
        service.task_queue = "nobody-polls-this"
        lines = [json.dumps(enrollment(f"bulk-{n}")) for n in range(60)]
        report = await asyncio.wait_for(import_enrollments(service, lines, "test", concurrency=16), 60)
        assert len(report.enrolled) == 60 and not report.failed, report.summary()
        with Session(service.engine) as session:
            reserving = session.scalar(select(func.count()).where(EpisodeRow.status == "reserving"))
        assert reserving == 60  # backed by running workflows: their baselines wait for a worker
        for entry in report.enrolled[:3]:
            handle = service.client.get_workflow_handle(f"episode-{entry.episode_id}")
            assert (await handle.describe()).status.name == "RUNNING"
            await handle.terminate()


def test_lines_are_split_the_same_whatever_the_chunks():
    """Lines are cut at newlines as bytes arrive: every chunk size gives the same lines, an overlong
    line is skipped to its end and named, a line not UTF-8 is named, CRLF and a last line without
    a newline are read."""
    data = b'abc\r\n\n0123456789X\nok\n\xff\xfe\n01234567890123456789\n{"cut'

    async def lines(size: int) -> list[tuple[int, str]]:
        async def chunks():
            for start in range(0, len(data), size):
                yield data[start : start + size]

        return [(n, t if isinstance(t, str) else t.message) async for n, t in split_lines(chunks(), 10)]

    too_long = "is over 10 bytes, the limit for one line"
    expected = [(1, "abc"), (2, ""), (3, too_long), (4, "ok"), (5, "is not UTF-8 text (byte 1)"), (6, too_long)]
    for size in range(1, len(data) + 1):
        assert asyncio.run(lines(size)) == [*expected, (7, '{"cut')], size


def big_file(count: int) -> tuple[bytes, dict[int, tuple[str, str]]]:
    """``count`` lines of enrollments, some bad on purpose: the body, and each bad line's field and
    the start of its message."""
    bad: dict[int, tuple[str, str]] = {}
    lines = []
    for number in range(1, count + 1):
        text = json.dumps(enrollment(f"big-{number}")).encode()
        if number == count:  # the sender stopped mid-line
            text, bad[number] = text[:100], ("line", "is not valid JSON")
        elif number % 500 == 0:
            text = json.dumps(
                enrollment(f"big-{number}", patient={"ref": f"big-{number}", "age": 12, "sex": "male"})
            ).encode()
            bad[number] = ("patient.age", "must be between 18 and 120")
        elif number == 777:
            text, bad[number] = b"{not json", ("line", "is not valid JSON")
        elif number == 1234:
            text, bad[number] = b'{"x": "' + b"y" * 70_000 + b'"}', ("line", "is over 65536 bytes")
        elif number == 2001:
            text, bad[number] = b"\xc3\x28", ("line", "is not UTF-8 text")
        elif number == 2501:
            text, bad[number] = json.dumps(enrollment("big-1")).encode(), ("patient.ref", "repeats line 1")
        lines.append(text + (b"\r\n" if number % 7 == 0 else b"\n"))
    return b"".join(lines).removesuffix(b"\n"), bad


async def test_imports_streams_a_large_file_line_by_line_over_http(env, tmp_path):
    """3,000 lines (1.2 MB, 18 times the API's 64 KB body limit, which answered 413 before) in
    one chunked request over real HTTP: every good line is an episode, every bad one an error
    naming its line and field, the cut-off last line included; nothing is dropped."""
    body, bad = big_file(3000)
    assert len(body) > 1_000_000
    async with api_client(env, sqlite_url(tmp_path)) as live, served(live.app) as url:
        live.service.task_queue = "nobody-polls-big"  # the import does not wait for baselines

        async def chunks():
            for start in range(0, len(body), 8192):
                yield body[start : start + 8192]

        headers = {**live.auth("coordinator"), "content-type": "application/x-ndjson"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as http:
            answer = await http.post("/imports", content=chunks())
        assert answer.status_code == 200, answer.text[:500]
        report = answer.json()
        rejected = {e["line"]: (e["field"], e["message"]) for e in report["rejected"]}
        assert sorted(rejected) == sorted(bad), report["rejected"]
        for number, (field, start) in bad.items():
            assert rejected[number][0] == field and rejected[number][1].startswith(start), rejected[number]
        assert "the file looks cut short" in rejected[3000][1]
        enrolled = [e["line"] for e in report["enrolled"]]
        assert enrolled == [n for n in range(1, 3001) if n not in bad] and not report["failed"], report["failed"]
        with Session(live.service.engine) as session:
            rows = session.scalars(select(EpisodeRow.patient_ref).where(EpisodeRow.patient_ref.like("big-%"))).all()
        assert sorted(rows) == sorted(f"big-{n}" for n in enrolled)


async def test_imports_limits_and_content_type(env, tmp_path, monkeypatch):
    """Its own total limit (CAREPATH_IMPORT_MAX_BYTES): a declared length over it is refused before
    anything is read; a chunked body over it stops there, the lines before it imported and named in
    the answer. A body not sent as JSON lines is refused (415) and changes nothing."""
    monkeypatch.setenv("CAREPATH_IMPORT_MAX_BYTES", "4000")
    lines = [json.dumps(enrollment(f"cap-{n}")).encode() + b"\n" for n in range(1, 21)]
    body = b"".join(lines)
    async with api_client(env, sqlite_url(tmp_path)) as live:
        ndjson = {"content-type": "application/x-ndjson"}
        form = await live.client.post("/imports", content=body, headers={"content-type": "text/plain"})
        assert form.status_code == 415 and form.json()["detail"][0]["field"] == "content-type", form.text
        declared = await live.client.post("/imports", content=body, headers=ndjson)
        assert declared.status_code == 413 and "nothing was read" in declared.json()["detail"][0]["message"]
        assert episodes(live.service) == 0

        async def chunks():
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        cut = await live.client.post("/imports", content=chunks(), headers=ndjson)
        assert cut.status_code == 413, cut.text
        complete = 4000 // len(lines[0])  # whole lines within the first 4,000 bytes
        message = cut.json()["detail"][0]["message"]
        assert f"lines from {complete + 1} on were not read" in message, message
        assert [e["line"] for e in cut.json()["report"]["enrolled"]] == list(range(1, complete + 1))
        assert episodes(live.service) == complete


async def test_imports_sender_gone_mid_body_keeps_the_whole_lines_only(env, tmp_path, caplog):
    """The sender goes away mid-body (Content-Length not reached): the whole lines it sent were
    imported as they came, the line it was cutting is not, the log says where it stopped, and the
    API goes on serving (no 500)."""
    whole = b"".join(json.dumps(enrollment(f"gone-{n}")).encode() + b"\n" for n in range(1, 4))
    async with api_client(env, sqlite_url(tmp_path)) as live, served(live.app) as url:

        def refs() -> list[str]:
            with Session(live.service.engine) as session:
                like = EpisodeRow.patient_ref.like("gone-%")
                return sorted(session.scalars(select(EpisodeRow.patient_ref).where(like)).all())

        host, port = url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        head = (
            f"POST /imports HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-ndjson\r\n"
            f"Authorization: Bearer {live.tokens['coordinator']}\r\nContent-Length: 100000\r\n\r\n"
        )
        writer.write(head.encode() + whole)
        await writer.drain()
        for _ in range(100):  # enrolled as they arrive, before the body ends
            if len(refs()) == 3:
                break
            await asyncio.sleep(0.1)
        writer.write(json.dumps(enrollment("gone-4")).encode()[:50])
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            if "import stopped" in caplog.text:
                break
            await asyncio.sleep(0.1)
        assert refs() == ["gone-1", "gone-2", "gone-3"]
        assert "the connection closed before the body ended: lines from 4 on were not read" in caplog.text
        async with httpx.AsyncClient(base_url=url, headers=live.auth("viewer")) as http:
            assert (await http.get("/episodes")).status_code == 200
