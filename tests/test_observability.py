"""Observability after real work: /metrics numbers, /ready, the worker's runtime metrics, JSON logs.

A dev server runs the production worker; enrollments and events go through the API, then the
numbers on /metrics are checked against the database and what was done.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from carepath.app import create_app
from carepath.observability import configure_logging, worker_runtime
from carepath.pathways.ovcf_lumbar.inputs import Enrollment
from carepath.service import CarepathService
from carepath.temporal import DATA_CONVERTER, connect
from db.engine import make_engine
from db.migrate import upgrade
from db.models import NotificationRow
from db.tokens import create_token
from tests.support.live import api_client, sqlite_url, start_dev_server
from tests.support.temporal import MemorySink
from tests.test_api import TODAY, enrollment
from worker import build_worker


@pytest.fixture(scope="module")
async def env():
    server = await start_dev_server()
    yield server
    await server.shutdown()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, sorted labels) -> value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def by_label(found: dict[Any, float], name: str) -> dict[str, float]:
    return {labels[0][1]: v for (n, labels), v in found.items() if n == name and labels}


async def scrape(api: httpx.AsyncClient) -> dict[Any, float]:
    answer = await api.get("/metrics", headers={"Authorization": ""})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain"), answer.text
    return samples(answer.text)


async def delivered(service: CarepathService) -> None:
    for _ in range(300):
        with Session(service.engine) as session:
            if not session.scalar(select(func.count()).where(NotificationRow.status == "pending")):
                return
        await asyncio.sleep(0.1)
    raise TimeoutError("notifications still pending")


async def test_metrics_after_enrollments_and_an_event(env, tmp_path):
    stream = io.StringIO()
    previous = logging.getLogger().handlers[:], logging.getLogger().level
    configure_logging("json", stream=stream)
    try:
        sink = MemorySink()
        sink.fail_next = 1  # the first delivery fails and is retried
        async with api_client(env, sqlite_url(tmp_path), sink) as live:
            api, service = live.client, live.service
            before = await scrape(api)
            ids = []
            for ref, days_ago in (("obs-patient-1", 0), ("obs-patient-2", 0), ("obs-patient-3", 70)):
                answer = await api.post("/episodes", json=enrollment(ref, days_ago=days_ago, analgesics=["opioid"]))
                assert answer.status_code == 201, answer.text
                ids.append(answer.json()["episode_id"])
            red_flag = {"type": "red_flag", "occurred_on": TODAY.isoformat(), "flag": "cord_compression"}
            assert (await api.post(f"/episodes/{ids[0]}/events", json=red_flag)).status_code == 200
            await delivered(service)
            # A month on: tasks due within it are overdue, for the worklist and the gauges alike.
            now = service.clock()
            service.clock = lambda: now + timedelta(days=30)
            after = await scrape(api)
            tasks = service.worklist(include_simulated=True)
            with Session(service.engine) as session:
                attempts = session.scalars(select(NotificationRow.attempts)).all()
    finally:
        logging.getLogger().handlers[:], _ = previous
        logging.getLogger().setLevel(previous[1])

    phases = by_label(after, "carepath_episodes")
    assert phases.get("acute") == 2, phases  # the two enrolled today
    assert sum(phases.values()) == 3, phases
    open_by_code: dict[str, int] = {}
    overdue_by_code: dict[str, int] = {}
    for task in tasks:
        open_by_code[task.code] = open_by_code.get(task.code, 0) + 1
        if task.overdue_days:
            overdue_by_code[task.code] = overdue_by_code.get(task.code, 0) + 1
    assert by_label(after, "carepath_open_tasks") == open_by_code
    assert by_label(after, "carepath_overdue_tasks") == overdue_by_code
    assert open_by_code.get("SURGICAL_CONSULTATION") == 1 and overdue_by_code, overdue_by_code
    assert by_label(after, "carepath_notifications") == {"delivered": len(sink.messages)}
    # The failed delivery was retried with its batch: every notification in it has two attempts.
    assert value(after, "carepath_notification_retries") == sum(n - 1 for n in attempts) >= 1

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("carepath_http_requests_total", method="POST", route="/episodes", status="201") == 3
    route = "/episodes/{episode_id}/events"
    assert delta("carepath_http_requests_total", method="POST", route=route, status="200") == 1
    assert delta("carepath_http_request_seconds_count", method="POST", route="/episodes") == 3
    assert delta("carepath_update_seconds_count", update="enroll", outcome="ok") == 3
    assert delta("carepath_update_seconds_count", update="event", outcome="ok") == 1

    # Structured logs: JSON lines with the episode id, never the patient's reference.
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [line for line in lines if line["logger"] == "carepath.http"]
    assert any(line.get("episode_id") == ids[0] and line["route"] == route for line in requests), requests
    assert all({"time", "level", "message"} <= line.keys() for line in lines)
    assert "obs-patient" not in stream.getvalue()


async def test_ready_names_what_is_down(env, tmp_path):
    async with api_client(env, sqlite_url(tmp_path)) as live:
        answer = await live.client.get("/ready", headers={"Authorization": ""})
        assert answer.status_code == 200 and answer.json() == {"status": "ready", "database": "ok", "temporal": "ok"}
    # The database unreachable (a file in a folder that does not exist), Temporal stopped.
    broken = make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    gone = await start_dev_server()
    client = gone.client
    await gone.shutdown()
    app = create_app(service=CarepathService(client, broken, "q"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as api:
        answer = await api.get("/ready")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5", answer.text
    assert [e["field"] for e in answer.json()["detail"]] == ["database", "temporal"], answer.text


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_worker_runtime_metrics_count_recording_retries(env, tmp_path):
    """The SDK's Prometheus endpoint serves temporal_* metrics and carepath_recording_retries."""
    url = sqlite_url(tmp_path)
    upgrade(url)
    engine = make_engine(url)
    failures = {"left": 1}

    @event.listens_for(engine, "before_cursor_execute")
    def refuse_once(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("UPDATE episodes") and failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("database is locked")

    address = f"127.0.0.1:{_free_port()}"
    client = await connect(
        env.client.service_client.config.target_host, runtime=worker_runtime(address), converter=DATA_CONVERTER
    )
    service = CarepathService(client, engine, "observed")
    try:
        with ThreadPoolExecutor(max_workers=4) as threads:
            async with build_worker(client, engine, "observed", threads, MemorySink(), 100, 4):
                app = create_app(service=service)
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as _:
                    await service.enroll(Enrollment.model_validate(enrollment("obs-worker")), "test")
                async with httpx.AsyncClient() as http:
                    for _ in range(50):  # the runtime exports on its own schedule
                        text = (await http.get(f"http://{address}/metrics")).text
                        if "carepath_recording_retries" in text:
                            break
                        await asyncio.sleep(0.2)
    finally:
        engine.dispose()
    found = samples(text)
    retries = [v for (name, _), v in found.items() if name.startswith("carepath_recording_retries")]
    assert retries == [1.0], [k for k in found if "carepath" in k[0]]
    assert any(name.startswith("temporal_activity_execution_latency") for name, _ in found)


async def test_traces_follow_a_request_into_the_workflow_and_its_activity(env, tmp_path):
    """With tracing on, one trace holds the HTTP request, the workflow update and the recording."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from temporalio.client import Client
    from temporalio.contrib.opentelemetry import TracingInterceptor

    from carepath.observability import setup_tracing
    from carepath.settings import Settings

    spans = InMemorySpanExporter()
    setup_tracing(spans)
    url = sqlite_url(tmp_path)
    upgrade(url)
    engine = make_engine(url)
    client = Client(**{**env.client.config(), "interceptors": [TracingInterceptor()]})
    service = CarepathService(client, engine, "traced")
    token = create_token(engine, "t", "coordinator", "test")[1]
    app = create_app(Settings(otel_exporter="console"), service=service)
    try:
        with ThreadPoolExecutor(max_workers=4) as threads:
            async with (
                build_worker(client, engine, "traced", threads, MemorySink(), 100, 4),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url="http://t",
                    headers={"Authorization": f"Bearer {token}"},
                ) as api,
            ):
                assert (await api.post("/episodes", json=enrollment("traced-1"))).status_code == 201
    finally:
        engine.dispose()
    finished = spans.get_finished_spans()
    http = [s for s in finished if s.name == "POST /episodes" and s.parent is None]
    assert http, sorted({s.name for s in finished})
    same_trace = {s.name for s in finished if s.context.trace_id == http[0].context.trace_id}
    assert {"RunWorkflow:Episode", "RunActivity:record_changes"} <= same_trace, same_trace
    assert not any("traced-1" in str(s.attributes) for s in finished)  # no patient data in spans
