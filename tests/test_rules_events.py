"""SPEC section 5: events any time, and overrides, withdrawal and event validation (section 7)."""

import pytest

from carepath.errors import InvalidInput
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.pathways.ovcf_lumbar.inputs import parse_event
from tests.support.story import Story, at, on


def test_bed_rest_alert_not_repeated_while_open_and_raised_again_once_closed():
    story = Story().assess(10, 5, ["nsaid"], mobility="bed_rest").assess(12, 5, ["nsaid"], mobility="bed_rest")
    item = story.item("BED_REST_ALERT")
    assert (item.day, item.kind, item.priority, item.assignee) == (10, "flag", "high", "coordinator")
    story.until(28).assess(30, 5, ["nsaid"], mobility="bed_rest")
    assert story.days("BED_REST_ALERT") == [10]
    story.close(31, "BED_REST_ALERT").assess(33, 5, ["nsaid"], mobility="bed_rest")
    assert story.days("BED_REST_ALERT") == [10, 33]


def test_bed_rest_alert_before_the_amendment_once_per_milestone():
    story = Story(rules_revision=1).assess(10, 5, ["nsaid"], mobility="bed_rest")
    story.close(11, "BED_REST_ALERT").assess(12, 5, ["nsaid"], mobility="bed_rest")
    assert story.days("BED_REST_ALERT") == [10]
    story.until(28).assess(30, 5, ["nsaid"], mobility="bed_rest")
    assert story.days("BED_REST_ALERT") == [10, 30]


def test_opioid_started_later_raises_caution_for_older_patients():
    assert Story(age=70).event(5, "medication_started", agent="opioid").days("OPIOID_CAUTION_ELDERLY") == [5]
    assert "OPIOID_CAUTION_ELDERLY" not in Story(age=50).event(5, "medication_started", agent="opioid").codes()
    via_assessment = Story(age=70).assess(6, 6, ["opioid"])
    assert via_assessment.days("OPIOID_CAUTION_ELDERLY") == [6]


def test_fall_or_sedation_on_opioid_raises_caution_but_nausea_does_not():
    base = Story(age=70, analgesics=["opioid"]).until(28)
    assert base.days("OPIOID_CAUTION_ELDERLY") == [0]
    base.assess(30, 5, ["opioid"], opioid_effects=["nausea"])
    assert base.days("OPIOID_CAUTION_ELDERLY") == [0]
    base.assess(31, 5, ["opioid"], opioid_effects=["fall"])
    assert base.days("OPIOID_CAUTION_ELDERLY") == [0]  # the enrollment's caution is still open
    base.close(32, "OPIOID_CAUTION_ELDERLY").assess(33, 5, ["opioid"], opioid_effects=["sedation"])
    assert base.days("OPIOID_CAUTION_ELDERLY") == [0, 33]
    young = Story(age=60, analgesics=["opioid"]).assess(3, 5, ["opioid"], opioid_effects=["sedation"])
    assert "OPIOID_CAUTION_ELDERLY" not in young.codes()


def test_assessment_replaces_analgesics_and_start_stop_edit_them():
    story = Story(analgesics=["nsaid", "opioid"]).assess(3, 5, ["acetaminophen"])
    assert story.state.analgesics == ["acetaminophen"]
    story.event(4, "medication_started", agent="nsaid").event(5, "medication_stopped", agent="acetaminophen")
    assert story.state.analgesics == ["nsaid"]


def test_calcitonin_started_closes_the_calcitonin_task():
    story = Story(pain_nrs=7).event(2, "medication_started", agent="calcitonin")
    assert "CALCITONIN_ACUTE_PAIN" not in story.open_codes()


def test_new_fracture_on_imaging_escalates_and_refreshes_imaging_age():
    story = Story().event(40, "imaging", modality="ct", new_fracture=True)
    item = story.item("NEW_FRACTURE")
    assert (item.day, item.kind, item.priority, item.assignee) == (40, "escalation", "urgent", "physician")
    assert "teriparatide" in item.detail
    assert story.state.latest_imaging_on.isoformat() == on(40)


def test_note_is_accepted_and_raises_nothing():
    story = Story()
    before = len(story.items)
    story.event(3, "note", text="Patient prefers morning calls.", author="Dr Ames")
    assert len(story.items) == before and not story.rejected


def test_withdraw_cancels_open_tasks_and_ends_the_episode():
    story = Story().until(28).event(30, "withdraw", reason="transferred")
    assert story.phase == "withdrawn"
    assert story.days("conservative->withdrawn") == [30]
    assert story.state.open_tasks == []
    cancelled = {c.code for c in story.closures if c.status == "cancelled"}
    assert {"START_OSTEOPOROSIS_THERAPY", "PAIN_REASSESSMENT", "AVOID_BED_REST"} <= cancelled
    story.event(31, "pain_assessment", nrs=3, analgesics=[])
    assert "withdrawn" in str(story.rejected[-1])
    assert OVCF_LUMBAR.next_due(story.state) is None


def test_events_after_completion_are_rejected():
    story = Story().event(2, "medication_started", agent="alendronate").until(380)
    story.event(381, "note", text="late", author="x")
    assert story.rejected and story.rejected[0].errors[0].field == "episode"


def test_override_skips_a_pending_milestone_with_a_reason():
    story = Story().event(5, "override", author="Dr Ames", reason="seen in clinic", skip_milestone="week6")
    skipped = story.item("week6")
    assert (skipped.kind, skipped.day) == ("skipped", 5)
    assert "seen in clinic" in skipped.title
    story.until(50)
    assert story.days("PAIN_REASSESSMENT") == [28]


def test_override_closes_an_open_task_with_a_reason():
    story = (
        Story()
        .event(
            3,
            "override",
            author="Dr Ames",
            reason="bisphosphonate contraindicated; referred",
            close_task="START_OSTEOPOROSIS_THERAPY",
        )
        .until(10)
    )
    assert "START_OSTEOPOROSIS_THERAPY" not in story.open_codes()
    assert "PHARMACOTHERAPY_OVERDUE" not in story.codes()
    assert any("contraindicated" in c.reason for c in story.closures)


def test_overriding_month3_still_evaluates_on_its_day():
    story = Story(pain_nrs=7, analgesics=["opioid"])
    story.event(80, "override", author="Dr Ames", reason="specialist follow-up", skip_milestone="month3")
    story.until(91)
    assert story.days("AUGMENTATION_REVIEW") == [91]
    assert "PAIN_REASSESSMENT" not in [i.code for i in story.items if i.day == 91]


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "pain_assessment", "occurred_on": on(-1), "nrs": 3}, "occurred_on"),
        ({"type": "pain_assessment", "occurred_on": on(30), "nrs": 3}, "occurred_on"),
        ({"type": "medication_started", "occurred_on": on(2), "agent": "aspirin"}, "agent"),
        (
            {"type": "pain_assessment", "occurred_on": on(2), "nrs": 3, "analgesics": ["tramadol"]},
            "analgesics[0]",
        ),
        ({"type": "red_flag", "occurred_on": on(2), "flag": "headache"}, "flag"),
        (
            {
                "type": "override",
                "occurred_on": on(2),
                "author": "a",
                "reason": "r",
                "skip_milestone": "week9",
            },
            "skip_milestone",
        ),
        (
            {
                "type": "override",
                "occurred_on": on(2),
                "author": "a",
                "reason": "r",
                "close_task": "OBTAIN_MRI",
            },
            "close_task",
        ),
    ],
)
def test_invalid_events_name_the_field_and_change_nothing(event, field):
    story = Story().until(5)
    before = story.state.model_copy(deep=True)
    with pytest.raises(InvalidInput) as caught:
        OVCF_LUMBAR.apply_event(story.state, parse_event(event), at(5, story.now.time()))
    assert caught.value.errors[0].field == field
    assert story.state == before


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "pain_assessment", "occurred_on": on(2), "nrs": 11}, "nrs"),
        ({"type": "pain_assessment", "occurred_on": on(2), "nrs": 4.5}, "nrs"),
        ({"type": "pain_assessment", "occurred_on": on(2), "nrs": "4"}, "nrs"),
        ({"type": "pain_assessment", "occurred_on": on(2), "nrs": 4, "mobility": "running"}, "mobility"),
        ({"type": "imaging", "occurred_on": on(2), "modality": "pet"}, "modality"),
        ({"type": "withdraw", "occurred_on": on(2), "reason": "bored"}, "reason"),
        ({"type": "note", "occurred_on": on(2), "text": "", "author": "x"}, "text"),
        ({"type": "teleport", "occurred_on": on(2)}, "type"),
        ({"type": "note", "occurred_on": on(2), "text": "t", "author": "x", "colour": "red"}, "colour"),
        ({"type": "override", "occurred_on": on(2), "author": "a", "reason": "r"}, "close_task"),
    ],
)
def test_malformed_events_name_the_field(event, field):
    with pytest.raises(InvalidInput) as caught:
        parse_event(event)
    assert caught.value.errors[0].field == field
