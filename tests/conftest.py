"""Shared fixtures.

Databases: ``database_url`` runs a test once on SQLite and once on a real PostgreSQL server,
each a fresh, migrated database. The server is started once per session (or taken from
``CAREPATH_TEST_POSTGRES_URL``, whose user must be allowed to create databases). Deselect the
PostgreSQL runs with ``-m "not postgres"``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from carepath.pathways import register_shipped
from db.engine import normalise_url
from db.migrate import upgrade
from tests.support.postgres import postgres_available, running_postgres, temporary_database

POSTGRES_URL_ENV = "CAREPATH_TEST_POSTGRES_URL"
register_shipped()  # as every entry point does at boot


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


# ---- databases --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database on a PostgreSQL server that lives for the whole session."""
    if url := os.environ.get(POSTGRES_URL_ENV):
        yield normalise_url(url)
        return
    if not postgres_available():
        reason = f"PostgreSQL is not installed: apt-get install -y postgresql (or set {POSTGRES_URL_ENV})"
        if _in_ci():
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(reason)
    # Not tmp_path_factory: the server runs as the postgres user, who cannot enter root's pytest dirs.
    with tempfile.TemporaryDirectory(prefix="carepath-pg-") as base, running_postgres(Path(base)) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with every migration applied, on each backend in turn."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'carepath.db'}"
        upgrade(url)
        yield url
        return
    # Looked up lazily so that `-m "not postgres"` never starts a server.
    with temporary_database(request.getfixturevalue("postgres_url")) as url:
        upgrade(url)
        yield url
