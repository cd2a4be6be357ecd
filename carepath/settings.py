"""Runtime settings from the environment (``CAREPATH_*``) with embedded defaults."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREPATH_", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "carepath-episodes"
    database_url: str = "sqlite:///carepath.db"
    # Sleeping episodes the worker keeps in memory (about 90 KB each); more than the number of
    # live episodes avoids evict-and-replay churn.
    max_cached_workflows: int = 10_000
    max_concurrent_activities: int = 50
