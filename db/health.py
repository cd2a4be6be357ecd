"""Whether the database answers: the health check and the bounded wait's probe ask the same way."""

from __future__ import annotations

from sqlalchemy import Engine, text


def check_database(engine: Engine) -> None:
    """Returns once the database has answered a trivial query; raises whatever refused it."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
