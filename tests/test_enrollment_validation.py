"""SPEC section 7 for enrollments: bad input gets an error naming the field."""

from datetime import time

import pytest

from carepath.errors import InvalidInput
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.pathways.ovcf_lumbar.definition import load_definition
from carepath.pathways.ovcf_lumbar.inputs import Enrollment, parse_model
from tests.support.story import at, base_enrollment, on


def _enroll(day: int = 0, **overrides):
    model = parse_model(Enrollment, base_enrollment(**overrides))
    return OVCF_LUMBAR.enroll(load_definition(), model, "ep", at(day, time(8)))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"age": 17}, "patient.age"),
        ({"age": 121}, "patient.age"),
        ({"age": "70"}, "patient.age"),
        ({"levels": ["L6"]}, "fracture.levels[0]"),
        ({"levels": ["T12"]}, "fracture.levels[0]"),
        ({"levels": []}, "fracture.levels"),
        ({"levels": ["L2", "L2"]}, "fracture.levels"),
        ({"pain_nrs": 11}, "pain_nrs"),
        ({"pain_nrs": -1}, "pain_nrs"),
        ({"pain_nrs": 5.5}, "pain_nrs"),
        ({"pain_nrs": True}, "pain_nrs"),
        ({"sex": "x"}, "patient.sex"),
        ({"ref": ""}, "patient.ref"),
        ({"contraindications": ["aspirin"]}, "contraindications[0]"),
        ({"identified_on": "2026-13-01"}, "identified_on"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_malformed_enrollment_names_the_field(overrides, field):
    with pytest.raises(InvalidInput) as caught:
        parse_model(Enrollment, base_enrollment(**overrides))
    assert field in [e.field for e in caught.value.errors]


@pytest.mark.parametrize(
    ("day", "overrides", "field"),
    [
        (0, {"identified_on": on(1)}, "identified_on"),
        (365, {}, "identified_on"),
        (0, {"analgesics": ["aspirin"]}, "analgesics[0]"),
        (0, {"red_flags": ["headache"]}, "red_flags[0]"),
        (0, {"osteoporosis_therapy": {"agent": "vitamin_c"}}, "osteoporosis_therapy.agent"),
        (
            0,
            {"osteoporosis_therapy": {"agent": "denosumab", "last_dose_on": on(3)}},
            "osteoporosis_therapy.last_dose_on",
        ),
        (0, {"imaging": [{"performed_on": on(2), "modality": "xray"}]}, "imaging[0].performed_on"),
    ],
)
def test_enrollment_checked_against_the_clock_and_definition(day, overrides, field):
    with pytest.raises(InvalidInput) as caught:
        _enroll(day, **overrides)
    assert caught.value.errors[0].field == field


def test_back_dating_up_to_364_days_is_accepted():
    state, _ = _enroll(364)
    assert state.enrolled_on.isoformat() == on(364)


def test_every_error_is_reported_at_once():
    with pytest.raises(InvalidInput) as caught:
        parse_model(Enrollment, base_enrollment(age=10, pain_nrs=12))
    assert {e.field for e in caught.value.errors} == {"patient.age", "pain_nrs"}
    assert "patient.age: must be between 18 and 120" in str(caught.value)
