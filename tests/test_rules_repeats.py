"""SPEC section 8 as amended on 2026-12-01: how often a code may be raised again.

Event-driven safety codes are raised by every triggering event unless an item with the same code
is still open; a new red flag raises a new consultation; an MRI completes an open OBTAIN_MRI.
Milestone codes stay once per milestone. Each raised item has an identity of its own.
"""

import pytest

from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.pathways.ovcf_lumbar.definition import load_definition
from carepath.pathways.ovcf_lumbar.state import RULES_REVISION
from tests.support.story import Story

SAFETY_CODES = ["SURGICAL_CONSULTATION", "NEW_FRACTURE", "OBTAIN_MRI", "BED_REST_ALERT", "OPIOID_CAUTION_ELDERLY"]

# One triggering event per safety code (events at 12:00 on the given day).
TRIGGERS = {
    "SURGICAL_CONSULTATION": ("red_flag", {"flag": "cord_compression"}),
    "NEW_FRACTURE": ("imaging", {"modality": "xray", "new_fracture": True}),
    "OBTAIN_MRI": ("pain_assessment", {"nrs": 5, "analgesics": ["nsaid"], "symptoms_changed": True}),
    "BED_REST_ALERT": ("pain_assessment", {"nrs": 5, "analgesics": ["nsaid"], "mobility": "bed_rest"}),
    "OPIOID_CAUTION_ELDERLY": ("pain_assessment", {"nrs": 5, "analgesics": ["opioid"], "opioid_effects": ["fall"]}),
}


def _trigger(story: Story, day: int, code: str) -> Story:
    kind, fields = TRIGGERS[code]
    return story.event(day, kind, **fields)


def test_the_policy_is_data_in_the_definition():
    for version in (1, 2):
        actions = load_definition(version=version).actions
        assert {c for c, a in actions.items() if a.repeat.when == "unless_open"} == set(SAFETY_CODES)
        assert [c for c, a in actions.items() if a.repeat.new_subject_raises] == ["SURGICAL_CONSULTATION"]


@pytest.mark.parametrize("code", SAFETY_CODES)
def test_raised_again_after_the_open_one_is_closed_months_later(code):
    story = Story(age=78, pain_nrs=2)  # no MRI asked for by the evaluation (NRS < 4)
    _trigger(story, 100, code)
    assert story.days(code) == [100]
    story.close(110, code)
    _trigger(story, 250, code)
    assert story.days(code) == [100, 250]
    occasions = [t.milestone for t in story.state.open_tasks if t.code == code]
    assert len(occasions) == 1 and occasions[0].endswith("day250")


@pytest.mark.parametrize("code", SAFETY_CODES)
def test_not_duplicated_while_open(code):
    story = Story(age=78, pain_nrs=2)  # no MRI asked for by the evaluation (NRS < 4)
    for day in (100, 130, 250):
        _trigger(story, day, code)
    assert story.days(code) == [100]
    assert [t.code for t in story.state.open_tasks].count(code) == 1


@pytest.mark.parametrize("code", SAFETY_CODES)
def test_closed_by_an_override_counts_as_closed(code):
    story = Story(age=78, pain_nrs=2)  # no MRI asked for by the evaluation (NRS < 4)
    _trigger(story, 100, code)
    story.event(110, "override", author="Dr Ames", reason="seen", close_task=code)
    _trigger(story, 250, code)
    assert story.days(code) == [100, 250]


def test_a_new_red_flag_while_a_consultation_is_open_raises_a_new_one():
    story = Story(red_flags=["instability"])
    story.event(3, "red_flag", flag="instability")
    assert story.days("SURGICAL_CONSULTATION") == [0]
    story.event(3, "red_flag", flag="cord_compression")
    story.event(4, "red_flag", flag="cord_compression")
    story.event(5, "red_flag", flag="instability")
    assert story.days("SURGICAL_CONSULTATION") == [0, 3]
    assert "cauda equina" in story.items[-1].detail or "cord" in story.items[-1].detail.lower()


def test_one_consultation_names_every_red_flag_given_at_enrollment():
    story = Story(red_flags=["instability", "neurological_deficit"])
    story.event(2, "red_flag", flag="neurological_deficit").event(2, "red_flag", flag="instability")
    assert story.days("SURGICAL_CONSULTATION") == [0]


def test_two_items_raised_on_one_day_each_have_their_own_identity():
    story = Story().event(40, "red_flag", flag="instability").event(40, "red_flag", flag="cord_compression")
    keys = [str(i.key) for i in story.items if i.code == "SURGICAL_CONSULTATION"]
    assert keys == ["SURGICAL_CONSULTATION@red_flag-day40", "SURGICAL_CONSULTATION@red_flag-day40-2"]
    assert len(set(story.state.raised)) == len(story.state.raised)


def test_the_occasion_says_what_raised_the_item():
    story = Story(red_flags=["instability"]).event(45, "imaging", modality="ct", new_fracture=True)
    assert str(story.item("SURGICAL_CONSULTATION").key) == "SURGICAL_CONSULTATION@enrollment"
    assert str(story.item("NEW_FRACTURE").key) == "NEW_FRACTURE@imaging-day45"


def test_an_mri_completes_the_open_obtain_mri_and_the_next_change_asks_again():
    story = _trigger(Story(), 60, "OBTAIN_MRI").event(70, "imaging", modality="mri")
    assert "OBTAIN_MRI" not in story.open_codes()
    assert any(c.code == "OBTAIN_MRI" and c.status == "completed" for c in story.closures)
    _trigger(story, 160, "OBTAIN_MRI")
    assert story.days("OBTAIN_MRI") == [60, 160]


def test_the_month3_evaluation_obtain_mri_follows_the_same_rule():
    # Symptoms changed on day 80 (MRI asked for, still open): the evaluation asks for nothing new.
    story = Story(pain_nrs=7, imaging=[]).until(80)
    _trigger(story, 80, "OBTAIN_MRI").assess(92, 6, ["nsaid"])
    assert story.days("OBTAIN_MRI") == [80]
    # Once that one is done, a persisting pain with stale imaging at month3 asks again.
    story = Story(pain_nrs=7, imaging=[])
    _trigger(story, 20, "OBTAIN_MRI").close(25, "OBTAIN_MRI").assess(92, 6, ["nsaid"])
    assert story.days("OBTAIN_MRI") == [20, 92]


def test_milestone_codes_stay_once_per_milestone():
    story = Story().until(400)
    assert story.days("PAIN_REASSESSMENT") == [28, 42, 56, 91]
    assert story.days("PAIN_REASSESSMENT_OVERDUE") == [35, 49, 63, 98]
    assert story.days("TWELVE_MONTH_REVIEW") == [365]


def test_an_episode_recorded_on_revision_1_raises_again_once_upgraded():
    story = Story(rules_revision=1).event(100, "red_flag", flag="neurological_deficit")
    story.event(110, "override", author="Dr Ames", reason="seen", close_task="SURGICAL_CONSULTATION")
    story.event(250, "red_flag", flag="cord_compression")
    assert story.days("SURGICAL_CONSULTATION") == [100]  # the defect, as recorded
    # An episode carries the definition it was enrolled on, from before actions had a policy.
    legacy = story.state.definition.model_copy(
        update={
            "actions": {
                c: a.model_copy(update={"repeat": type(a.repeat)()}) for c, a in story.definition.actions.items()
            }
        }
    )
    story.state = OVCF_LUMBAR.upgrade(story.state.model_copy(update={"definition": legacy}))
    assert story.state.rules_revision == RULES_REVISION
    assert story.state.definition.actions["SURGICAL_CONSULTATION"].repeat.when == "unless_open"
    story.event(260, "red_flag", flag="cord_compression")
    assert story.days("SURGICAL_CONSULTATION") == [100, 260]


def test_upgrade_keeps_what_was_raised_and_is_idempotent():
    story = Story(rules_revision=1).event(5, "red_flag", flag="instability")
    upgraded = OVCF_LUMBAR.upgrade(story.state)
    assert upgraded.raised == story.state.raised and upgraded.open_tasks == story.state.open_tasks
    assert OVCF_LUMBAR.upgrade(upgraded) is upgraded
