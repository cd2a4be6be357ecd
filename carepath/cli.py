"""The ``carepath`` command: simulate stories, run the service, and work with episodes."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from carepath.errors import InvalidInput
from carepath.pathways import register_shipped


def _simulate(args: argparse.Namespace) -> int:
    from carepath.simulate.cohort import run_with_measures
    from carepath.simulate.report import render_text
    from carepath.simulate.runner import print_progress, run_files

    options = {
        "processes": args.processes,
        "progress": print_progress,
        "pathway_version": args.pathway_version,
        "lanes": args.lanes,
    }
    try:
        if args.measures:
            results, measures = run_with_measures(run_files, args.files, args.database_url, **options)
        else:
            results = run_files(args.files, args.database_url, **options)
    except InvalidInput as exc:
        for error in exc.errors:
            print(f"carepath simulate: invalid scenario: {error}", file=sys.stderr)
        return 2
    if args.measures:  # the cohort's measures; with --json beside the stories
        json.dump({"stories": results, "measures": measures} if args.json else measures, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(results))
    return 0


def _dev(args: argparse.Namespace) -> int:
    from pathlib import Path

    from carepath.dev import DevOptions, main

    return main(
        DevOptions(
            home=Path(args.home),
            host=args.host,
            port=args.port,
            temporal_port=args.temporal_port,
            ui_port=args.ui_port,
            demo=args.demo,
            mllp_port=args.mllp_port,
        )
    )


def _worker(_: argparse.Namespace) -> int:
    import worker

    worker.main()
    return 0


def _intake(args: argparse.Namespace) -> int:
    from carepath.intake.run import main
    from carepath.observability import configure_logging
    from carepath.settings import load_settings

    configure_logging(load_settings().log_format)
    return main(args.host, args.port)


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from carepath.app import create_app
    from carepath.observability import configure_logging
    from carepath.settings import load_settings

    configure_logging(load_settings().log_format)
    # Our handler formats every log line (JSON by default); the request middleware logs requests.
    uvicorn.run(create_app(), host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


def _bootstrap_admin(args: argparse.Namespace) -> int:
    from carepath.settings import load_settings
    from db.engine import make_engine
    from db.migrate import upgrade
    from db.tokens import create_token, list_tokens

    settings = load_settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    if any(row.role == "admin" and row.revoked_at is None for row in list_tokens(engine)) and not args.force:
        print("carepath bootstrap-admin: an admin token exists already (use --force to add another)", file=sys.stderr)
        return 2
    token_id, token = create_token(engine, args.name, "admin", "bootstrap-admin")
    print(f"admin token {token_id} for {args.name} (shown once): {token}")
    return 0


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, not {value}")
    return seconds


def _schedules(args: argparse.Namespace) -> int:
    import asyncio

    from carepath.schedules import ensure_schedules
    from carepath.settings import load_settings
    from carepath.temporal import connect

    settings = load_settings()

    async def ensure() -> str:
        client = await connect(
            settings.temporal_address, settings.temporal_namespace, converter=settings.data_converter()
        )
        return await ensure_schedules(client, settings.task_queue, settings.clinic_timezone or None)

    print(f"schedule {asyncio.run(ensure())} is in place (created or updated)", flush=True)
    return 0  # the command then leaves without the interpreter's finalization (entry)


def _with_service(work: Callable[..., Any]) -> Any:
    """Run ``work(service, settings)`` on a service connected from CAREPATH_* settings (migrated first)."""
    import asyncio

    from carepath.service import CarepathService
    from carepath.settings import load_settings
    from carepath.temporal import connect
    from db.engine import make_engine
    from db.migrate import upgrade

    settings = load_settings()

    async def run() -> Any:
        upgrade(settings.database_url)
        engine = make_engine(settings.database_url)
        try:
            client = await connect(
                settings.temporal_address, settings.temporal_namespace, converter=settings.data_converter()
            )
            return await work(CarepathService(client, engine, settings.task_queue), settings)
        finally:
            engine.dispose()

    return asyncio.run(run())


def _print_sweep(report: Any) -> None:
    for episode_id in report.released:
        print(f"released {episode_id}: no workflow backed its reservation")
    for episode_id in report.in_progress:
        print(f"in progress {episode_id}: its workflow runs; the baseline is on its way")
    print(f"{len(report.released)} released, {len(report.in_progress)} in progress")


def _older_than(args: argparse.Namespace, settings: Any) -> Any:
    from datetime import timedelta

    seconds = args.older_than if args.older_than is not None else settings.reservation_timeout_seconds
    return timedelta(seconds=seconds)


def _reconcile_enrollments(args: argparse.Namespace) -> int:
    async def sweep(service: Any, settings: Any) -> None:
        _print_sweep(await service.reconcile_enrollments(_older_than(args, settings)))

    _with_service(sweep)
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from activities import channels
    from carepath.reconcile import reconcile_episodes

    async def both(service: Any, settings: Any) -> Any:
        report = await reconcile_episodes(service, args.include_closed, sink=channels.sink(settings))
        # Then the sweep: a reservation whose workflow never started has no history to replay.
        report.enrollments = await service.reconcile_enrollments(_older_than(args, settings))
        return report

    report = _with_service(both)
    if args.json:
        print(report.model_dump_json(indent=2))
        return 0
    for episode_id, why in report.skipped.items():
        print(f"skipped {episode_id}: {why}")
    restored = ", ".join(f"{n} {table}" for table, n in sorted(report.restored.items())) or "nothing"
    print(f"{report.episodes} episodes re-recorded, {len(report.changed)} had rows missing; restored: {restored}")
    if report.delivered:
        print(f"{report.delivered} restored notifications delivered again (same delivery ids)")
    _print_sweep(report.enrollments)
    return 0


@contextlib.contextmanager
def _stdout_to_stderr(active: bool) -> Iterator[None]:
    """While ``active``, whatever anything writes to stdout (file descriptor 1: Python, the SDK's
    core, a C library) goes to stderr, so that the JSON printed afterwards is stdout's only content."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _import(args: argparse.Namespace) -> int:
    from carepath.importer import run_import

    if not os.path.isfile(args.file):
        if args.json:
            print(json.dumps({"error": f"FILE: no such file {args.file!r}"}))
        print(f"carepath import: FILE: no such file {args.file!r}", file=sys.stderr)
        return 2

    async def run(service: Any, _: Any) -> Any:
        return await run_import(service, args.file, args.actor, args.concurrency, not args.no_progress)

    try:
        with _stdout_to_stderr(args.json):
            report = _with_service(run)
    except Exception as exc:  # e.g. Temporal unreachable at the start: nothing was imported
        if not args.json:
            raise
        cause = f"{type(exc).__name__}: {str(exc)[:300]}"
        print(f"carepath import: {cause}", file=sys.stderr)
        print(json.dumps({"error": cause, "imported": False}))
        return 1
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        for entry in report.rejected:
            print(f"line {entry.line}: rejected: {entry.field}: {entry.message}")
        for entry in report.failed:
            print(f"line {entry.line}: failed (run the import again): {entry.message}")
        print(report.summary())
    # Bad lines are bad input (2); lines that failed on an outage are worth a re-run (1).
    return 2 if report.rejected else 1 if report.failed else 0


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, not {value!r}")
    return int(value)


def _whatif(args: argparse.Namespace, base: str) -> str:
    from carepath.simulate.runner import run_files
    from carepath.simulate.whatif import forecast_command
    from carepath.terminal import CommandError

    if args.enrollments_per_week < 0:
        raise CommandError("--enrollments-per-week: must be 0 or more", code=2)
    return forecast_command(base, args.weeks, args.enrollments_per_week, args.json, run_files)


def _terminal(action: Callable[[argparse.Namespace, str], str]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from carepath.terminal import CommandError, api_url

        try:
            print(action(args, api_url(args.api)))
        except CommandError as exc:
            print(f"carepath {args.command}: {exc}", file=sys.stderr)
            return exc.code
        return 0

    return run


def _terminal_commands(sub: argparse._SubParsersAction) -> None:
    from carepath import terminal as t

    def add(name: str, help_text: str, action: Callable[[argparse.Namespace, str], str]) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--api",
            help=f"API base URL (env CAREPATH_API_URL, default {t.DEFAULT_API}); the token comes from CAREPATH_TOKEN",
        )
        parser.set_defaults(handler=_terminal(action))
        return parser

    p = add("enroll", "enroll a patient from an enrollment JSON file", lambda a, u: t.enroll(u, a.file))
    p.add_argument("file", help="enrollment JSON (identified_on, patient, fracture, pain_nrs, ...); - for stdin")
    p = add(
        "event",
        "record one event from a JSON file",
        lambda a, u: t.event(u, a.episode, a.file, a.idempotency_key),
    )
    p.add_argument("episode")
    p.add_argument("file", help="event JSON with type and occurred_on; - for stdin")
    p.add_argument("--idempotency-key", help="retrying with the same key records the event once")
    p = add(
        "worklist",
        "open tasks across episodes, most urgent and most overdue first",
        lambda a, u: t.worklist(u, a.assignee, a.status, a.priority),
    )
    p.add_argument("--assignee", choices=["physician", "coordinator", "patient"])
    p.add_argument("--status", choices=["open", "completed", "cancelled"], default="open")
    p.add_argument("--priority", choices=["urgent", "high", "routine"])
    p = add("show", "an episode: phase, open tasks and timeline", lambda a, u: t.show(u, a.episode))
    p.add_argument("episode")
    p = add("complete", "complete a task", lambda a, u: t.close(u, a.task, "completed", a.reason))
    p.add_argument("task", type=int)
    p.add_argument("--reason")
    p = add(
        "cancel",
        "cancel a task (a reason is required)",
        lambda a, u: t.close(u, a.task, "cancelled", a.reason),
    )
    p.add_argument("task", type=int)
    p.add_argument("--reason", required=True)
    p = add("withdraw", "withdraw a patient from the pathway", lambda a, u: t.withdraw(u, a.episode, a.reason))
    p.add_argument("episode")
    p.add_argument("--reason", required=True, choices=["recovered", "transferred", "declined", "deceased", "other"])
    p = add(
        "forecast",
        "coming work per week: the running episodes plus K new patients a week (simulated story mix)",
        lambda a, u: _whatif(a, u),
    )
    p.add_argument("--weeks", type=_positive, default=12, help="weeks ahead, 1-52 (default 12)")
    p.add_argument("--enrollments-per-week", type=int, default=0, metavar="K", help="new patients a week (default 0)")
    p.add_argument("--json", action="store_true", help="rows {week_start, code, assignee, running, new, count}")
    p = add(
        "token",
        "create an API token (admin); the token is printed once",
        lambda a, u: t.create_api_token(u, a.name, a.role),
    )
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True, choices=["viewer", "coordinator", "physician", "admin"])


def _intake_command(sub: argparse._SubParsersAction) -> None:
    intake = sub.add_parser(
        "intake",
        help="listen for HL7 v2 messages over MLLP (production; settings from CAREPATH_* env)",
        description="Receive ORU^R01 reports and ADT^A01/A04/A08 over MLLP; each is stored with the candidates it "
        "raises before its ACK (AA) is sent. Needs only the database (CAREPATH_DATABASE_URL).",
    )
    intake.add_argument("--host", default="127.0.0.1")
    intake.add_argument("--port", type=int, default=2575)
    intake.set_defaults(handler=_intake)


def _simulate_command(sub: argparse._SubParsersAction) -> None:
    """carepath simulate: patients' stories on a time-skipping server."""
    sim = sub.add_parser(
        "simulate",
        help="run scenario files through the production workflow on a time-skipping server",
        description="Run patients' stories (shared/pathway/SCENARIOS.md) side by side and print what "
        "the pathway raised.",
    )
    sim.add_argument("files", nargs="+", metavar="FILE", help="scenario JSON files")
    sim.add_argument("--json", action="store_true", help="print a JSON list instead of readable timelines")
    sim.add_argument(
        "--measures",
        action="store_true",
        help="print the cohort's quality measures as JSON (with --json: {stories, measures})",
    )
    sim.add_argument(
        "--database-url", default=None, help="record into this database (default: a new temporary SQLite file per run)"
    )
    sim.add_argument(
        "--processes", type=int, default=None, help="worker processes, each with its own server (default: CPUs)"
    )
    sim.add_argument(
        "--lanes", type=int, default=2, help="stories at once per process, each on its own server (default 2)"
    )
    sim.add_argument(
        "--pathway-version",
        type=int,
        default=1,
        help="ovcf-lumbar version to run the stories on (default 1, the version SPEC.md and the scenarios describe)",
    )
    sim.set_defaults(handler=_simulate)


def _dev_command(sub: argparse._SubParsersAction) -> None:
    """carepath dev: everything locally on embedded defaults."""
    dev = sub.add_parser(
        "dev",
        help="run Temporal, the worker and the API locally on embedded defaults",
        description="Start a local Temporal dev server (state kept in HOME), migrate the SQLite database, run "
        "the worker and the HTTP API. Ctrl-C stops everything. CAREPATH_TEMPORAL_ADDRESS and "
        "CAREPATH_DATABASE_URL point it at an existing Temporal and database instead.",
    )
    dev.add_argument("--home", default=".carepath", help="where local state lives (default .carepath)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--temporal-port", type=int, default=7233)
    dev.add_argument("--ui-port", type=int, default=8233)
    dev.add_argument(
        "--demo",
        action="store_true",
        help="also enroll a handful of back-dated demo patients (urgent, overdue, a check-in waiting) and "
        "print tokens to sign in with",
    )
    dev.add_argument("--mllp-port", type=int, default=2575, help="HL7 v2 (MLLP) intake on HOST (default 2575)")
    dev.set_defaults(handler=_dev)


def _serve_commands(sub: argparse._SubParsersAction) -> None:
    """carepath worker and carepath api: the production processes."""
    sub.add_parser("worker", help="run the worker (production; settings from CAREPATH_* env)").set_defaults(
        handler=_worker
    )
    api = sub.add_parser("api", help="serve the HTTP API (production; settings from CAREPATH_* env)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(handler=_api)


def _bootstrap_command(sub: argparse._SubParsersAction) -> None:
    """carepath bootstrap-admin: the first admin token of a production install."""
    boot = sub.add_parser(
        "bootstrap-admin",
        help="create an admin API token directly in the database (first set-up of a production install)",
    )
    boot.add_argument("--name", required=True)
    boot.add_argument("--force", action="store_true", help="even if an admin token exists")
    boot.set_defaults(handler=_bootstrap_admin)


def _schedules_command(sub: argparse._SubParsersAction) -> None:
    sub.add_parser(
        "schedules", help="create or update carepath's Temporal Schedules (the daily digest at 08:00 clinic time)"
    ).set_defaults(handler=_schedules)


def _repair_commands(sub: argparse._SubParsersAction) -> None:
    """carepath reconcile-enrollments and carepath reconcile: the database brought back in line with the workflows."""
    rec = sub.add_parser(
        "reconcile-enrollments",
        help="release enrollment reservations that no workflow backs (the API also does this every minute)",
        description="Release every enrollment reservation older than --older-than seconds whose workflow never "
        "started or ended before recording the baseline, so the patient can be enrolled again (audited as "
        "enroll:released). Reservations with a running workflow are left to finish. Settings from CAREPATH_* env.",
    )
    rec.add_argument(
        "--older-than",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="only reservations at least this old (default CAREPATH_RESERVATION_TIMEOUT_SECONDS, 120)",
    )
    rec.set_defaults(handler=_reconcile_enrollments)

    full = sub.add_parser(
        "reconcile",
        help="re-record every running episode from its workflow into the database, then run the enrollment sweep",
        description="Repair the database after a restore from an older backup or lost rows: every running "
        "episode's recorded decisions (events, timeline items, tasks, notifications, audit entries) are "
        "written again from its workflow history, idempotently (what is there stays, what is missing comes "
        "back, nothing doubles); restored notifications are delivered again. Then the enrollment sweep "
        "(reconcile-enrollments) runs. Settings from CAREPATH_* env.",
    )
    full.add_argument("--include-closed", action="store_true", help="also episodes whose workflow has ended")
    full.add_argument("--older-than", type=_seconds, default=None, metavar="SECONDS", help="for the sweep")
    full.add_argument("--json", action="store_true", help="print the report as JSON")
    full.set_defaults(handler=_reconcile)


def _import_command(sub: argparse._SubParsersAction) -> None:
    """carepath import: many enrollments from a JSON-lines file."""
    imp = sub.add_parser(
        "import",
        help="enroll many patients from a JSON-lines file (one enrollment per line), resumable",
        description="Enroll every patient of FILE (one POST /episodes body per line) with a durable workflow start "
        "that does not wait for the baseline. Idempotent per patient ref: a re-run skips patients already active "
        "and enrolls the rest. Prints enrolled / already active / rejected (line and field) / failed; exit 2 if a "
        "line was rejected, 1 if some failed (Temporal or the database unavailable: run it again). Settings from "
        "CAREPATH_* env.",
    )
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--concurrency", type=_positive, default=64, help="starts in flight at once (default 64)")
    imp.add_argument("--actor", default="carepath:import", help="who the audit trail names (default carepath:import)")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    imp.add_argument("--json", action="store_true", help="print the full report as JSON")
    imp.set_defaults(handler=_import)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carepath", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (
        _simulate_command,
        _dev_command,
        _serve_commands,
        _intake_command,
        _bootstrap_command,
        _repair_commands,
        _import_command,
        _schedules_command,
        _terminal_commands,
    ):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    register_shipped()  # the boot list (carepath/pathways/__init__.py)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # e.g. `carepath worklist | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


def entry() -> None:
    """The ``carepath`` command: ``main``, then leave without the interpreter's finalization.

    The Temporal SDK's runtime threads can hang or abort that finalization after a run
    (ENGINEERING.md): seen as ``carepath import --json`` printing its report and never exiting
    when Temporal had gone down mid-import. The work is done and flushed by then.
    """
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
