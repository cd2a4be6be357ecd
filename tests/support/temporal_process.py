"""A Temporal dev server in a process the test can kill and start again (its state in a file)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from pathlib import Path

from temporalio.client import Client

from carepath.temporal import DATA_CONVERTER, bundled_binary, quiet_runtime


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TemporalProcess:
    def __init__(self, folder: Path) -> None:
        self.db = folder / "temporal.db"
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self, timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            [
                bundled_binary("temporal"),
                "server",
                "start-dev",
                "--headless",
                "--db-filename",
                str(self.db),
                "--ip",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--http-port",
                str(_free_port()),
                "--metrics-port",
                str(_free_port()),
                "--log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                client = await self.connect()
                await client.service_client.check_health()
                return
            except Exception:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def connect(self) -> Client:
        return await Client.connect(self.address, data_converter=DATA_CONVERTER, runtime=quiet_runtime())

    def kill(self) -> None:
        """The server dies at once (SIGKILL): connections are refused until ``start``."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
