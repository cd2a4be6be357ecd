"""SPEC section 1 (clock, back-dating, ordering within a day) and section 2 (phases)."""

from datetime import time

from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from tests.support.story import Story, at


def test_phases_follow_the_clock_on_the_conservative_track():
    story = Story(pain_nrs=5).until(27)
    assert story.phase == "acute"
    story.until(28)
    assert story.phase == "conservative"
    assert story.item("acute->conservative").kind == "phase"
    assert story.item("acute->conservative").day == 28
    story.until(91)
    assert story.phase == "evaluation"
    assert story.days("conservative->evaluation") == [91]


def test_milestone_actions_run_at_the_configured_time():
    story = Story().until(28, time(8, 59))
    assert "PAIN_REASSESSMENT" not in story.codes()
    story.until(28, time(9, 0))
    assert story.days("PAIN_REASSESSMENT") == [28]


def test_next_due_is_the_earliest_pending_action():
    story = Story()
    assert OVCF_LUMBAR.next_due(story.state) == at(7, time(9, 0))  # the watchdog
    story.event(3, "medication_started", agent="alendronate")
    assert OVCF_LUMBAR.next_due(story.state) == at(28, time(9, 0))  # week4


def test_back_dated_enrollment_skips_passed_milestones_with_a_reason():
    story = Story(enroll_day=60)
    skipped = [i for i in story.items if i.kind == "skipped"]
    assert [i.code for i in skipped] == ["week4", "week6", "week8"]
    assert all(i.day == 60 for i in skipped)
    assert all("enrolled on day 60" in i.title for i in skipped)
    assert "PAIN_REASSESSMENT" not in story.codes()
    assert story.phase == "conservative"
    assert not any(i.kind == "phase" for i in story.items)  # starts in its implied phase
    story.until(91)
    assert story.days("PAIN_REASSESSMENT") == [91]


def test_milestone_on_the_enrollment_day_runs_when_enrolled_before_nine():
    story = Story(enroll_day=28)
    assert story.phase == "conservative"
    assert "week4" not in story.codes()
    story.until(28)
    assert story.days("PAIN_REASSESSMENT") == [28]
    assert not any(i.kind == "phase" for i in story.items)


def test_enrolled_after_month3_is_evaluated_at_enrollment():
    story = Story(enroll_day=100, pain_nrs=6, analgesics=["opioid"])
    assert [i.code for i in story.items if i.kind == "skipped"] == ["week4", "week6", "week8", "month3"]
    assert story.days("AUGMENTATION_REVIEW") == [100]
    assert story.phase == "augmentation_review"
    assert story.days("evaluation->augmentation_review") == [100]


def test_enrolled_after_month3_without_criteria_is_a_conservative_success():
    story = Story(enroll_day=200, pain_nrs=1, analgesics=[])
    assert story.phase == "conservative_success"
    assert "AUGMENTATION_REVIEW" not in story.codes()


def test_last_day_of_back_dating_still_reaches_month12():
    story = Story(enroll_day=364).until(365)
    assert story.days("TWELVE_MONTH_REVIEW") == [365]
    assert story.phase == "completed"


def test_twelve_month_review_completes_or_enters_maintenance():
    done = Story().event(2, "medication_started", agent="alendronate").until(400)
    assert done.phase == "completed"
    assert done.days("TWELVE_MONTH_REVIEW") == [365]
    on_denosumab = Story(pain_nrs=2).event(2, "medication_started", agent="denosumab").until(400)
    assert on_denosumab.phase == "maintenance"
    assert on_denosumab.days("conservative_success->maintenance") == [365]


def test_nothing_is_due_after_completion():
    story = Story().event(2, "medication_started", agent="alendronate").until(400)
    assert OVCF_LUMBAR.next_due(story.state) is None
