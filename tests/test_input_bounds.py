"""Dates bounded to what a clinic can mean: none before 1900-01-01, in any pathway's any date field
(the engine's date primitive), and event or imaging dates not after today; a 422 names the field."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from carepath.errors import InvalidInput
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from tests.support.story import base_enrollment
from tests.toy_pathway import TOY_KNEE

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
TODAY = NOW.date()


def _fields(exc: pytest.ExceptionInfo[InvalidInput]) -> dict[str, str]:
    return {e.field: e.message for e in exc.value.errors}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"osteoporosis_therapy": {"agent": "denosumab", "last_dose_on": "0001-01-01"}},
            "osteoporosis_therapy.last_dose_on",
        ),
        ({"imaging": [{"performed_on": "0001-06-30", "modality": "xray"}]}, "imaging[0].performed_on"),
        ({"imaging": [{"performed_on": "1899-12-31", "modality": "mri"}]}, "imaging[0].performed_on"),
        ({"identified_on": "0999-01-01"}, "identified_on"),
    ],
)
def test_enrollment_dates_before_1900_are_refused_naming_the_field(overrides, field):
    with pytest.raises(InvalidInput) as refused:
        OVCF_LUMBAR.parse_enrollment(base_enrollment(**overrides))
    assert _fields(refused) == {field: "must not be before 1900-01-01"}


def test_event_dates_before_1900_are_refused_in_every_pathway():
    for pathway, event in (
        (OVCF_LUMBAR, {"type": "note", "occurred_on": "0001-01-01", "text": "x", "author": "kim"}),
        (TOY_KNEE, {"type": "flare", "occurred_on": "1899-12-31", "severity": 3}),
    ):
        with pytest.raises(InvalidInput) as refused:
            pathway.parse_event(event)
        assert _fields(refused) == {"occurred_on": "must not be before 1900-01-01"}, pathway.id
    with pytest.raises(InvalidInput) as refused:
        TOY_KNEE.parse_enrollment({"identified_on": "0001-01-01", "patient": {"ref": "k-1"}})
    assert _fields(refused) == {"identified_on": "must not be before 1900-01-01"}


def test_1900_itself_and_today_are_dates_a_clinic_can_mean():
    enrollment = OVCF_LUMBAR.parse_enrollment(
        base_enrollment(
            identified_on=TODAY.isoformat(),
            osteoporosis_therapy={"agent": "denosumab", "last_dose_on": "1900-01-01"},
            imaging=[{"performed_on": TODAY.isoformat(), "modality": "xray"}],
        )
    )
    OVCF_LUMBAR.validate_enrollment(OVCF_LUMBAR.definition(), enrollment, NOW)
    assert enrollment.osteoporosis_therapy.last_dose_on == date(1900, 1, 1)


def test_imaging_and_last_dose_after_today_are_refused():
    tomorrow = (TODAY + timedelta(days=1)).isoformat()
    enrollment = OVCF_LUMBAR.parse_enrollment(
        base_enrollment(
            identified_on=TODAY.isoformat(),
            osteoporosis_therapy={"agent": "denosumab", "last_dose_on": tomorrow},
            imaging=[{"performed_on": tomorrow, "modality": "xray"}],
        )
    )
    with pytest.raises(InvalidInput) as refused:
        OVCF_LUMBAR.validate_enrollment(OVCF_LUMBAR.definition(), enrollment, NOW)
    assert _fields(refused) == {
        "osteoporosis_therapy.last_dose_on": "must not be in the future",
        "imaging[0].performed_on": "must not be in the future",
    }
