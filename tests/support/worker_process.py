"""The production worker in a process of its own, so that a test can SIGKILL it.

Run it as ``python -m tests.support.worker_process --address HOST:PORT --namespace default
--task-queue Q --database-url URL --sink-file FILE``: it builds ``worker.build_worker`` with the
plain ``DATA_CONVERTER`` and a ``FileSink``, prints ``ready`` on stdout once it polls, and runs
until SIGTERM/SIGINT (a clean stop), SIGKILL, or the death of the process that started it.
``--crash-once-at before-commit|after-commit --crash-marker FILE`` makes it SIGKILL itself at its
first database commit (a recording activity's transaction) unless FILE exists, creating FILE
first, so the restarted worker runs on.

``WorkerProcess`` starts, kills and stops such a process from a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

READY = "ready"
ROOT = Path(__file__).resolve().parents[2]


# ---- the process ------------------------------------------------------------------------------


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.support.worker_process")
    parser.add_argument("--address", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--sink-file", required=True, type=Path)
    parser.add_argument("--max-cached", type=int, default=1_000)
    parser.add_argument("--max-activities", type=int, default=16)
    parser.add_argument("--crash-once-at", choices=["before-commit", "after-commit"])
    parser.add_argument("--crash-marker", type=Path)
    return parser.parse_args(argv)


def _crash_once_at(moment: str, marker: Path) -> None:
    """SIGKILL this process at its first commit (before or after it reaches the database)."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    def die(_: object) -> None:
        if marker.exists():
            return
        marker.write_text(moment)
        os.kill(os.getpid(), signal.SIGKILL)

    event.listen(Session, moment.replace("-", "_"), die)


async def _run(args: argparse.Namespace) -> None:
    # Imported here so that `--help` and the parent's import of WorkerProcess stay light.
    from activities.notifications import FileSink
    from carepath.temporal import DATA_CONVERTER, connect, quiet_runtime
    from db.engine import make_engine
    from worker import build_worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()

    async def orphaned() -> None:  # never outlive the test that started us
        while os.getppid() == parent:
            await asyncio.sleep(0.5)
        stop.set()

    watchdog = asyncio.create_task(orphaned())
    if args.crash_once_at:
        assert args.crash_marker is not None, "--crash-once-at needs --crash-marker"
        _crash_once_at(args.crash_once_at, args.crash_marker)
    engine = make_engine(args.database_url)
    client = await connect(args.address, args.namespace, runtime=quiet_runtime(), converter=DATA_CONVERTER)
    try:
        with ThreadPoolExecutor(max_workers=args.max_activities) as executor:
            worker = build_worker(
                client,
                engine,
                args.task_queue,
                executor,
                FileSink(args.sink_file),
                args.max_cached,
                args.max_activities,
            )
            async with worker:
                print(READY, flush=True)
                await stop.wait()
    finally:
        watchdog.cancel()
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(_arguments(argv)))
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK sometimes hangs at interpreter exit (docs/ENGINEERING.md): leave at once.
    os._exit(0)


# ---- the test's handle on it ------------------------------------------------------------------


class WorkerProcess:
    """One worker process at a time: ``start`` (waits for ``ready``), ``kill`` (SIGKILL), ``stop``."""

    def __init__(
        self,
        *,
        address: str,
        task_queue: str,
        database_url: str,
        sink_file: Path,
        log_file: Path,
        namespace: str = "default",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.command = [
            sys.executable,
            "-m",
            "tests.support.worker_process",
            "--address",
            address,
            "--namespace",
            namespace,
            "--task-queue",
            task_queue,
            "--database-url",
            database_url,
            "--sink-file",
            str(sink_file),
            *extra_args,
        ]
        self.log_file = log_file
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0
        self.start_seconds: list[float] = []

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, timeout: float = 60) -> None:
        assert not self.running, "a worker process is already running"
        began = time.monotonic()
        with self.log_file.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                cwd=ROOT,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except TimeoutError:
            await self.kill()
            raise
        if line.decode().strip() != READY:
            await self.kill()
            raise RuntimeError(f"worker process did not start (see {self.log_file}): {line!r}")
        self.start_seconds.append(time.monotonic() - began)

    async def kill(self) -> None:
        """SIGKILL: no clean shutdown, no goodbye to the server, activities die mid-flight."""
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            self.kills += 1
        await self.process.wait()
        self.process = None

    async def stop(self, timeout: float = 15) -> None:
        """SIGTERM and wait; SIGKILL if it does not go in time."""
        if self.process is None:
            return
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                await self.kill()
        self.process = None


if __name__ == "__main__":
    main()
