"""Runtime settings from the environment (``CAREPATH_*``) with embedded defaults."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from temporalio.converter import DataConverter

from carepath.codec import KeyRing, KeyRingError, encrypted_converter
from carepath.temporal import DATA_CONVERTER


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREPATH_", extra="ignore")

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    task_queue: str = "carepath-episodes"
    # Pathway version for new enrollments (default: the newest shipped); running episodes keep theirs.
    pathway_version: int | None = None
    database_url: str = "sqlite:///carepath.db"
    # Episodes the worker keeps in memory (~230 KiB each, measured). Episodes sleep for weeks, so
    # those beyond this are evicted and replayed from history when their next timer or event
    # comes; the bound keeps a worker with 10,000 sleeping episodes under ~400 MiB.
    max_cached_workflows: int = Field(1_000, ge=1)
    max_concurrent_activities: int = 50
    # Where notifications go: "file" (JSON lines, the default) or "webhook" (HMAC-signed POST).
    notification_sink: Literal["file", "webhook", "email"] = "file"
    notification_file: str = ".carepath/notifications.jsonl"
    webhook_url: str = ""
    webhook_secret: str = ""
    # Patients' messages (check-in links, reminders, patient tasks): "file" or "webhook" (an SMS
    # gateway behind it); never e-mail, since the enrollment holds no patient address.
    patient_sink: Literal["file", "webhook"] = "file"
    patient_file: str = ".carepath/patient-messages.jsonl"
    # E-mail for clinicians (CAREPATH_NOTIFICATION_SINK=email): SMTP server, and who gets each role's mail.
    smtp_host: str = ""
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = True
    smtp_from: str = "carepath@localhost"
    smtp_to_coordinator: str = ""  # comma-separated addresses
    smtp_to_physician: str = ""
    # The address people reach carepath at: check-in links and the episode links in messages.
    public_url: str = Field("http://127.0.0.1:8000", pattern=r"^https?://[^\s/]+(/\S*)?$")
    # The digest's 08:00 is in this zone (default: the pathway's clock, where milestones run).
    clinic_timezone: str = ""
    # Payload encryption (carepath/codec.py): a key file, or keys inline. Production refuses to
    # start without keys unless allow_unencrypted is set on purpose.
    key_file: str = ""
    encryption_keys: str = ""
    encryption_key_id: str = ""
    allow_unencrypted: bool = False
    # The enrollment sweep (carepath/reconcile.py): how often the API runs it, and how old a
    # reservation must be before it may be released (well above an enrollment's few seconds).
    reconcile_every_seconds: float = Field(60, gt=0)
    reservation_timeout_seconds: float = Field(120, gt=0)
    # How often the API sends the events left in the outbox (answered 503, then their process died).
    outbox_every_seconds: float = Field(10, gt=0)
    # How long a request waits for its write to be recorded before answering 503 + Retry-After
    # (in an outage the write goes on and lands later; a retry with its Idempotency-Key gets it).
    update_wait_seconds: float = Field(10, gt=0)
    # An episode's workflow continues as new past this many history events (or when Temporal
    # suggests it); small values exercise continue-as-new (bench/load.py), not for production.
    history_limit: int = Field(10_000, ge=100)
    # Observability (carepath/observability.py): the worker's Prometheus endpoint (host:port; empty:
    # off), the trace exporter ("" off, "console", "otlp" with OTEL_EXPORTER_OTLP_* env), log lines.
    worker_metrics_address: str = ""
    otel_exporter: Literal["", "console", "otlp"] = ""
    log_format: Literal["json", "text"] = "json"
    # Largest request body the API reads (an enrollment or event is well under 10 KB).
    max_request_bytes: int = 65_536
    # Largest body POST /imports reads, line by line as it arrives (its own limit, not the one
    # above): 64 MiB is about 170,000 enrollments, whose report holds about 60 MB in the API
    # process until it is sent; 0 takes any size. `carepath import` has no such limit.
    import_max_bytes: int = Field(67_108_864, ge=0)
    # Signs the pages' CSRF tokens; empty: a random secret per API process (set one when several
    # API processes serve the pages behind one address).
    csrf_secret: str = ""
    # A signed-in page session ends after this long without a request, and this long after
    # sign-in whatever its use (db/sessions.py); logging out or revoking its token ends it too.
    session_idle_minutes: float = Field(30, gt=0)
    session_absolute_hours: float = Field(12, gt=0)
    # Origins allowed to call the codec endpoint from a browser (the Temporal UI).
    codec_cors_origins: str = "http://127.0.0.1:8233,http://localhost:8233,http://localhost:8080"
    # The HL7 v2 intake (`carepath intake`, and `carepath dev --mllp-port`): the largest message it
    # takes, how many senders at once, and how long a silent connection stays open.
    intake_max_bytes: int = Field(1_048_576, ge=1024)
    intake_max_connections: int = Field(32, ge=1)
    intake_idle_seconds: float = Field(300, gt=0)

    def key_ring(self) -> KeyRing | None:
        if self.key_file:
            path = Path(self.key_file)
            if not path.exists():
                raise KeyRingError(f"CAREPATH_KEY_FILE {path} does not exist")
            return KeyRing.from_json(path.read_text())
        if self.encryption_keys:
            return KeyRing.from_env_value(self.encryption_keys, self.encryption_key_id or None)
        return None

    def data_converter(self) -> DataConverter:
        ring = self.key_ring()
        if ring is None:
            if not self.allow_unencrypted:
                raise KeyRingError(
                    "no encryption keys: set CAREPATH_KEY_FILE or CAREPATH_ENCRYPTION_KEYS "
                    "(or CAREPATH_ALLOW_UNENCRYPTED=true for a throwaway setup)"
                )
            return DATA_CONVERTER
        return encrypted_converter(DATA_CONVERTER, ring)


def load_settings() -> Settings:
    """Settings from the environment; a bad value stops the program naming its variable (exit 2)."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            variable = "CAREPATH_" + "_".join(str(part) for part in error["loc"]).upper()
            print(f"carepath: {variable}: {error['msg']} (got {error.get('input')!r})", file=sys.stderr)
        raise SystemExit(2) from None
