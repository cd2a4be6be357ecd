"""Metrics, traces and logs, from well-kept libraries.

- API: ``/metrics`` (prometheus-client): request counts and latency by route template, update
  latency, and carepath's own gauges computed from the database at scrape time (episodes by phase,
  open and overdue tasks by code, notifications by status and failed attempts).
- Worker: the Temporal SDK's runtime telemetry on ``CAREPATH_WORKER_METRICS_ADDRESS`` (its
  ``temporal_*`` metrics plus ``carepath_recording_retries``, made through the activity's meter).
- Traces: OpenTelemetry through ``temporalio.contrib.opentelemetry.TracingInterceptor`` and the
  FastAPI instrumentation; off unless ``CAREPATH_OTEL_EXPORTER`` is ``console`` or ``otlp``.
- Logs: one JSON object per line (python-json-logger); they carry episode ids, never patient data.

No label or log field holds patient data: codes, phases, route templates and episode ids only.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from db.gauges import store_counts

# Process-wide, in prometheus-client's default registry (one API process, one set of series).
REQUESTS = Counter("carepath_http_requests", "HTTP requests answered", ["method", "route", "status"])
REQUEST_SECONDS = Histogram("carepath_http_request_seconds", "HTTP request latency", ["method", "route"])
UPDATE_SECONDS = Histogram(
    "carepath_update_seconds",
    "Time for a write to be recorded by its workflow (including writes answered 503 and finished later)",
    ["update", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
RECORDING_RETRIES = "carepath_recording_retries"


def observe_update(update: str, seconds: float, outcome: str) -> None:
    UPDATE_SECONDS.labels(update, outcome).observe(seconds)


class StoreCollector(Collector):
    """carepath's gauges, counted in the database when Prometheus scrapes (always current, no state)."""

    def __init__(self, engine: Engine, today: Callable[[], date]) -> None:
        self.engine = engine
        self.today = today

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = store_counts(self.engine, self.today())
        notes = counts.notifications
        yield _gauge("carepath_episodes", "Episodes by phase (enrolled, not simulated)", "phase", counts.phases)
        reservations = counts.reservations
        yield _gauge("carepath_enrollment_reservations", "Reservations not (yet) episodes", "status", reservations)
        yield _gauge("carepath_open_tasks", "Open tasks by code", "code", counts.open_tasks)
        yield _gauge("carepath_overdue_tasks", "Open tasks past their due date, by code", "code", counts.overdue_tasks)
        yield _gauge("carepath_notifications", "Notifications by status", "status", [(s, n) for s, n, _ in notes])
        yield GaugeMetricFamily(
            "carepath_notification_retries",
            "Delivery attempts after a notification's first (its earlier attempts failed)",
            value=sum(retries for _, _, retries in notes),
        )


def _gauge(name: str, doc: str, label: str, rows: Sequence[Any]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=[label])
    for value, count in rows:
        family.add_metric([str(value)], count)
    return family


def metrics_text(engine: Engine, today: Callable[[], date]) -> bytes:
    """The process's metrics (default registry) followed by the database gauges."""
    store = CollectorRegistry(auto_describe=False)
    store.register(StoreCollector(engine, today))
    return generate_latest(REGISTRY) + generate_latest(store)


class RequestMetrics:
    """Count and time every request by its route template (``/episodes/{episode_id}``: no ids as
    labels), and log it; a plain ASGI middleware (``@app.middleware`` costs a task group a request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            _record(scope, status, time.perf_counter() - began)


def _record(scope: Scope, status: int, seconds: float) -> None:
    route, method = getattr(scope.get("route"), "path", "unmatched"), scope["method"]
    REQUESTS.labels(method, route, str(status)).inc()
    REQUEST_SECONDS.labels(method, route).observe(seconds)
    episode_id = scope.get("path_params", {}).get("episode_id")
    logging.getLogger("carepath.http").info(
        "%s %s %s",
        method,
        route,
        status,
        extra={"route": route, "status": status, "ms": round(seconds * 1000, 1), "episode_id": episode_id},
    )


# ---- the worker's metrics: the SDK runtime ---------------------------------------------------


def worker_runtime(bind_address: str) -> Any:
    """A Temporal runtime exporting Prometheus metrics on ``bind_address`` (``host:port``); None if unset."""
    if not bind_address:
        return None
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=bind_address)))


def count_recording_retry(failed_try: bool = False) -> None:
    """Inside the recording activity: count an attempt after the first (the worker's metrics).
    ``failed_try``: this attempt failed; a failed local try counts, as the workflow then records
    through the scheduled activity (whose first attempt is the retry)."""
    from temporalio import activity

    if not activity.in_activity():  # write_changes driven directly (tests, tools): nothing to count
        return
    info = activity.info()
    if failed_try and info.is_local:
        why = "recording failed in the workflow task; retried as a scheduled activity"
    elif not failed_try and info.attempt > 1:
        why = f"recording retried (attempt {info.attempt})"
    else:
        return
    activity.metric_meter().create_counter(
        RECORDING_RETRIES, "Recording activity attempts after the first (database errors, killed workers)"
    ).add(1)
    activity.logger.warning(why, extra={"episode_id": _episode_of(info.workflow_id)})


def _episode_of(workflow_id: str | None) -> str | None:
    return workflow_id.removeprefix("episode-") if workflow_id else None


# ---- traces ------------------------------------------------------------------------------------


def tracing_interceptors(exporter: str) -> list[Any]:
    """Temporal client/worker interceptors that trace, after setting up the exporter; none when off."""
    if not exporter:
        return []
    setup_tracing(exporter)
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor()]


_traced = False


def setup_tracing(exporter: str | Any) -> None:
    """A global tracer provider exporting to ``console``, ``otlp`` (OTEL_EXPORTER_OTLP_* env), or a SpanExporter."""
    global _traced
    if _traced:
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "carepath"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
    elif exporter == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise SystemExit(
                "carepath: CAREPATH_OTEL_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http "
                "(pip install 'carepath[otlp]')"
            ) from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:  # a SpanExporter object (tests: InMemorySpanExporter)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _traced = True


def instrument_app(app: Any, exporter: str) -> None:
    if exporter:
        setup_tracing(exporter)
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="metrics,health,ready")


# ---- logs --------------------------------------------------------------------------------------


def configure_logging(log_format: str, level: int = logging.INFO, stream: Any = None) -> logging.Handler:
    """``json``: one JSON object per line (time, level, logger, message, episode_id, ...); ``text``: readable."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return handler
