"""The notification channels as the settings name them (``CAREPATH_NOTIFICATION_SINK``,
``CAREPATH_PATIENT_SINK`` and what each needs); a bad choice is a ValueError naming the variable."""

from __future__ import annotations

from pathlib import Path

from activities.notifications import Channels, FileSink, NotificationSink, SmtpSink, WebhookSink
from carepath.settings import Settings


def clinician_sink(settings: Settings) -> NotificationSink:
    if settings.notification_sink == "webhook":
        return WebhookSink(settings.webhook_url, settings.webhook_secret)
    if settings.notification_sink == "file":
        return FileSink(Path(settings.notification_file))
    if settings.notification_sink == "email":
        if not settings.smtp_host:
            raise ValueError("CAREPATH_NOTIFICATION_SINK=email needs CAREPATH_SMTP_HOST")
        return SmtpSink(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.smtp_from,
            recipients={
                role: [a.strip() for a in value.split(",") if a.strip()]
                for role, value in (
                    ("coordinator", settings.smtp_to_coordinator),
                    ("physician", settings.smtp_to_physician),
                )
            },
            user=settings.smtp_user,
            password=settings.smtp_password,
            starttls=settings.smtp_starttls,
        )
    raise ValueError(
        f"CAREPATH_NOTIFICATION_SINK must be 'file', 'webhook' or 'email', not {settings.notification_sink!r}"
    )


def patient_channel(settings: Settings) -> NotificationSink:
    if settings.patient_sink == "webhook":
        return WebhookSink(settings.webhook_url, settings.webhook_secret)
    if settings.patient_sink == "file":
        return FileSink(Path(settings.patient_file))
    raise ValueError(f"CAREPATH_PATIENT_SINK must be 'file' or 'webhook', not {settings.patient_sink!r}")


def sink(settings: Settings) -> NotificationSink:
    """Clinician and patient messages, each to its own channel."""
    return Channels(clinician=clinician_sink(settings), patient=patient_channel(settings))
