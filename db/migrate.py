"""Run the alembic migrations programmatically (the CLI, the worker and tests call this)."""

from __future__ import annotations

import warnings
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.exc import SAWarning

from db.engine import normalise_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    with warnings.catch_warnings():
        # SQLite's batch migrations copy a table and reflect its neighbours through foreign keys;
        # SQLAlchemy cannot reflect ix_episodes_patient_ref_lower (an index on lower(patient_ref))
        # and says so, though the copy never touches that table or its index. Nothing is wrong.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index", SAWarning)
        command.upgrade(alembic_config(url), revision)
