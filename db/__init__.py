"""Persistence: SQLAlchemy 2 models, engines, alembic migrations and the episode store."""
