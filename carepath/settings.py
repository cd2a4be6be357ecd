"""Runtime settings from the environment (``CAREPATH_*``) with embedded defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from activities.notifications import FileSink, NotificationSink, WebhookSink


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
    # Where notifications go: "file" (JSON lines, the default) or "webhook" (HMAC-signed POST).
    notification_sink: str = "file"
    notification_file: str = ".carepath/notifications.jsonl"
    webhook_url: str = ""
    webhook_secret: str = ""

    def sink(self) -> NotificationSink:
        if self.notification_sink == "webhook":
            return WebhookSink(self.webhook_url, self.webhook_secret)
        if self.notification_sink == "file":
            return FileSink(Path(self.notification_file))
        raise ValueError(f"CAREPATH_NOTIFICATION_SINK must be 'file' or 'webhook', not {self.notification_sink!r}")
