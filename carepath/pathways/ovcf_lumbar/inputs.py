"""pydantic models for what people tell the pathway: an enrollment and clinical events.

Shape checks live here (types, ranges, unknown fields). Checks that need the pathway
definition or the clock (known agents, dates between day 0 and today) live in the rules.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError, ValidationInfo, field_validator

from carepath.engine.inputs import (
    EnrollmentCore,
    EventCore,
    Flag,
    InputModel,
    IsoDate,
    Name,
    PatientRef,
    Text,
    between,
    parse_model,
)
from carepath.engine.inputs import unique as _unique
from carepath.engine.vocabulary import Sex
from carepath.errors import InvalidInput, from_validation_error
from carepath.pathways.ovcf_lumbar.vocabulary import (
    Contraindication,
    Level,
    Mobility,
    Modality,
    OpioidEffect,
    WithdrawReason,
)

# SPEC section 7: NRS 0-10 (an integer), age 18-120.
NRS = Annotated[int, Field(strict=True), between(0, 10)]
Age = Annotated[int, Field(strict=True), between(18, 120)]


class Patient(InputModel):
    ref: PatientRef
    age: Age
    sex: Sex


class Fracture(InputModel):
    levels: Annotated[list[Level], Field(min_length=1), AfterValidator(_unique)]
    acute_injury: Flag = False
    correlating_symptoms: Flag = False


class ImagingStudy(InputModel):
    performed_on: IsoDate
    modality: Modality


class CurrentTherapy(InputModel):
    agent: str
    last_dose_on: IsoDate | None = None


class EnrollmentBase(InputModel):
    """Fields an enrollment has whether it is dated (live) or in days (scenarios)."""

    patient: Patient
    fracture: Fracture
    pain_nrs: NRS
    analgesics: Annotated[list[str], AfterValidator(_unique)] = []
    contraindications: Annotated[list[Contraindication], AfterValidator(_unique)] = []
    calcium_vitamin_d: Flag = False
    red_flags: Annotated[list[str], AfterValidator(_unique)] = []


class Enrollment(EnrollmentBase, EnrollmentCore):
    identified_on: IsoDate
    osteoporosis_therapy: CurrentTherapy | None = None
    imaging: list[ImagingStudy] = []

    @property
    def patient_ref(self) -> str:
        return self.patient.ref


# ---- events ---------------------------------------------------------------------------------


class EventBase(EventCore):
    pass


class PainAssessment(EventBase):
    type: Literal["pain_assessment"] = "pain_assessment"
    nrs: NRS
    analgesics: Annotated[list[str], AfterValidator(_unique)] = []
    oral_analgesia_adequate: Flag = True
    mobility: Mobility = "ambulatory"
    symptoms_changed: Flag = False
    opioid_effects: Annotated[list[OpioidEffect], AfterValidator(_unique)] = []


class MedicationStarted(EventBase):
    type: Literal["medication_started"] = "medication_started"
    agent: str


class MedicationStopped(EventBase):
    type: Literal["medication_stopped"] = "medication_stopped"
    agent: str


class DoseGiven(EventBase):
    type: Literal["dose_given"] = "dose_given"
    agent: str


class Imaging(EventBase):
    type: Literal["imaging"] = "imaging"
    modality: Modality
    new_fracture: Flag = False
    marrow_edema: Flag = False


class HospitalAdmission(EventBase):
    type: Literal["hospital_admission"] = "hospital_admission"


class ParenteralNarcotics(EventBase):
    type: Literal["parenteral_narcotics"] = "parenteral_narcotics"


class RedFlagRaised(EventBase):
    type: Literal["red_flag"] = "red_flag"
    flag: str


class ClinicianNote(EventBase):
    type: Literal["note"] = "note"
    text: Text
    author: Name


class Override(EventBase):
    """A clinician override: skip a pending milestone or close an open task, with a reason."""

    type: Literal["override"] = "override"
    author: Name
    reason: Text
    skip_milestone: str | None = None
    # Checked even when absent, so that "neither" is named too (after skip_milestone, by order).
    close_task: Annotated[str | None, Field(validate_default=True)] = None

    @field_validator("close_task")
    @classmethod
    def _exactly_one_target(cls, value: str | None, info: ValidationInfo) -> str | None:
        if (info.data.get("skip_milestone") is None) == (value is None):
            raise ValueError("give exactly one of skip_milestone or close_task")
        return value


class Withdraw(EventBase):
    type: Literal["withdraw"] = "withdraw"
    reason: WithdrawReason
    text: Text | None = None


Event = Annotated[
    PainAssessment
    | MedicationStarted
    | MedicationStopped
    | DoseGiven
    | Imaging
    | HospitalAdmission
    | ParenteralNarcotics
    | RedFlagRaised
    | ClinicianNote
    | Override
    | Withdraw,
    Field(discriminator="type"),
]
# Every event model, in the order the episode page shows their forms.
EVENT_MODELS: tuple[type[EventBase], ...] = (
    PainAssessment,
    MedicationStarted,
    MedicationStopped,
    DoseGiven,
    Imaging,
    HospitalAdmission,
    ParenteralNarcotics,
    RedFlagRaised,
    ClinicianNote,
    Override,
    Withdraw,
)
EVENT_TYPES: frozenset[str] = frozenset(m.model_fields["type"].default for m in EVENT_MODELS)
_EVENT = TypeAdapter(Event)


def parse_event(data: Any, prefix: str = "") -> Event:
    """Validate one event; errors name the field under ``prefix`` (union tags left out)."""
    try:
        return _EVENT.validate_python(data)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix, skip=EVENT_TYPES) from None


__all__ = ["Enrollment", "Event", "InvalidInput", "parse_event", "parse_model"]
