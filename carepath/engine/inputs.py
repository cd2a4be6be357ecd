"""Input primitives every pathway's models share: strict dates, flags, texts, patient refs, and
parsing that names the field of every error (SPEC section 7: bad input changes nothing)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError
from pydantic_core import PydanticCustomError

from carepath.errors import from_validation_error


def between(lo: int, hi: int):
    def check(value: int) -> int:
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return value

    check.bounds = (lo, hi)  # type: ignore[attr-defined]  # read by forms (engine.presentation)
    return AfterValidator(check)


def unique(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat an entry")
    return values


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# No clinical date a clinic records is older than this: an earlier one is a typing slip ("0001-01-01"),
# and would put a task centuries overdue at the top of the worklist. Later-than-today is the
# rules' check (it needs the clinic's clock).
EARLIEST_DATE = date(1900, 1, 1)


def _iso_date(value: Any) -> Any:
    """A date as JSON carries it ("YYYY-MM-DD") or a date object; no datetimes, numbers or other spellings.

    Not pydantic's strict date: that refuses the strings FastAPI and scenario files pass in.
    """
    if isinstance(value, datetime) or not isinstance(value, str | date):
        raise PydanticCustomError("date_type", "must be a date (YYYY-MM-DD)")
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise PydanticCustomError("date_type", "must be a date (YYYY-MM-DD)")
    return value


def _not_too_early(value: date) -> date:
    if value < EARLIEST_DATE:
        raise PydanticCustomError(
            "date_too_early", "must not be before {earliest}", {"earliest": EARLIEST_DATE.isoformat()}
        )
    return value


# Strict inputs: "yes" is not true, 1.0 is not 1, a datetime or a number is not a date.
IsoDate = Annotated[date, BeforeValidator(_iso_date), AfterValidator(_not_too_early)]
Flag = Annotated[bool, Field(strict=True)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
PatientRef = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")
]


class InputModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], data: Any, prefix: str = "") -> M:
    """Validate ``data`` as ``model``; errors name the field under ``prefix``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix) from None


class EventCore(InputModel):
    """What the engine reads of any pathway's event."""

    type: str
    occurred_on: IsoDate


class EnrollmentCore(InputModel):
    """What the engine reads of any pathway's enrollment: day 0 and who the patient is."""

    identified_on: IsoDate

    @property
    def patient_ref(self) -> str:
        raise NotImplementedError
