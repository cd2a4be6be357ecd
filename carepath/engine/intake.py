"""What a pathway declares so that reports and coded diagnoses can name its candidates.

The intake (``carepath.intake``: the MLLP listener, the FHIR endpoints, the candidates queue) is
the same for every pathway and knows no clinical words. A pathway that wants patients found where
they are reported gives an ``IntakeDetector`` as its ``intake``: which sentences of a report and
which codes are its condition, what of a message pre-fills its enrollment, and which of its events
an admission is. Everything here is pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Coding:
    """One coded concept as a message carries it (FHIR ``Coding``, HL7 ``CWE``)."""

    system: str  # e.g. http://snomed.info/sct, http://hl7.org/fhir/sid/icd-10-cm, I10, SCT
    code: str
    display: str = ""


@dataclass(frozen=True)
class Finding:
    """What a detector found: the sentence (or coded concept) and where in it the match is.

    ``spans`` are (start, end) offsets into ``sentence`` of the matched phrase and levels, so
    that a page can highlight them; ``levels`` are the pathway's own levels (what its enrollment
    takes), ``noted`` levels seen beside them that the pathway does not take (e.g. T12).
    """

    sentence: str
    levels: tuple[str, ...] = ()
    noted: tuple[str, ...] = ()
    spans: tuple[tuple[int, int], ...] = ()
    code: str = ""  # "system|code" when it came from a coding

    def as_dict(self) -> dict[str, Any]:
        return {
            "sentence": self.sentence,
            "levels": list(self.levels),
            "noted": list(self.noted),
            "spans": [list(s) for s in self.spans],
            "code": self.code,
        }


@dataclass(frozen=True)
class ReportFacts:
    """What a message said about the patient and the study, for a pre-filled enrollment.

    Every field is what the message gave, or None: nothing is guessed.
    """

    patient_ref: str
    age: int | None = None
    sex: str | None = None  # the engine's Sex vocabulary
    reported_on: date | None = None  # the study's (or diagnosis's) date
    modality: str | None = None  # as the message names it (e.g. CT, MR, CR, DX)
    levels: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class IntakeDetector(Protocol):
    def find_in_text(self, text: str) -> list[Finding]:
        """Every sentence of ``text`` that names the pathway's condition, negations excluded."""
        ...

    def find_in_codes(self, codings: list[Coding], text: str = "") -> list[Finding]:
        """The codings that are the pathway's condition; ``text`` (body site, code text) may add levels."""
        ...

    def enrollment_draft(self, facts: ReportFacts) -> dict[str, Any]:
        """The part of the pathway's enrollment that ``facts`` give (never a clinical answer they do not)."""
        ...

    def admission_event(self, admitted_on: date) -> dict[str, Any] | None:
        """The pathway's event for a hospital admission on ``admitted_on`` (None: it has none)."""
        ...


_CHECKED: dict[int, bool] = {}  # detector id -> implements the protocol (isinstance on a Protocol is slow)


def intake_of(pathway: Any) -> IntakeDetector | None:
    """The pathway's intake detector, if it declares one."""
    detector = getattr(pathway, "intake", None)
    if detector is None:
        return None
    known = _CHECKED.get(id(detector))
    if known is None:
        known = _CHECKED[id(detector)] = isinstance(detector, IntakeDetector)
    return detector if known else None
