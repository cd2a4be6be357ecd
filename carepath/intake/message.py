"""One received message as the intake handles it, whatever it came as (HL7 v2 or FHIR)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from carepath.engine.intake import Coding


@dataclass(frozen=True)
class Refusal:
    """Why a message is refused: where (``segment``/``field``, e.g. PID and 3), in words, and how."""

    message: str
    segment: str = ""
    field: int | None = None
    ack_code: str = "AE"  # AE: its content is wrong; AR: it cannot be read at all
    hl7_code: str = "207"  # HL7 table 0357 (101 required field missing, 102 data type error, ...)

    @property
    def location(self) -> str:
        if not self.segment:
            return "message"
        return f"{self.segment}-{self.field}" if self.field is not None else self.segment

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True)
class Patient:
    ref: str
    system: str = ""
    birth_date: date | None = None
    sex: str | None = None  # the engine's Sex vocabulary


@dataclass
class Received:
    """A message read (or refused) but not yet stored."""

    source: str  # hl7 | fhir
    kind: str  # ORU^R01, ADT^A01, DiagnosticReport, Condition
    dedupe_key: str
    body: bytes
    control_id: str | None = None
    sender: str = ""
    patient: Patient | None = None
    text: str = ""  # the report's words (title and findings)
    codings: list[Coding] = field(default_factory=list)
    coding_text: str = ""  # body site and code text beside the codings
    reported_on: date | None = None
    modality: str | None = None
    admitted_on: date | None = None  # a hospital admission (ADT^A01)
    refusal: Refusal | None = None


def age_on(birth_date: date | None, day: date | None) -> int | None:
    """Whole years from ``birth_date`` to ``day`` (None when either is unknown or it is negative)."""
    if birth_date is None or day is None:
        return None
    years = day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))
    return years if years >= 0 else None
