"""SPEC section 3 (baseline actions at enrollment) and section 6 (red flags)."""

from tests.support.story import Story, on

ALWAYS = ["AVOID_BED_REST", "BRACING_INCONCLUSIVE", "EXERCISE_INCONCLUSIVE"]


def test_default_enrollment_raises_the_baseline_on_day_0():
    story = Story()
    for code in ["START_OSTEOPOROSIS_THERAPY", "CALCIUM_VITAMIN_D", "CALCITONIN_ACUTE_PAIN", *ALWAYS]:
        assert story.days(code) == [0], code


def test_start_osteoporosis_therapy_lists_the_options_with_their_evidence():
    item = Story().item("START_OSTEOPOROSIS_THERAPY")
    assert (item.kind, item.priority, item.assignee) == ("task", "high", "physician")
    assert item.evidence == ["1", "3", "4", "5"]
    for option in ["ibandronate", "strontium ranelate", "risedronate", "denosumab 60 mg", "teriparatide"]:
        assert option in item.detail


def test_no_start_task_when_an_agent_is_already_active():
    story = Story(osteoporosis_therapy={"agent": "alendronate"})
    assert "START_OSTEOPOROSIS_THERAPY" not in story.codes()


def test_calcium_vitamin_d_skipped_when_already_taken():
    assert "CALCIUM_VITAMIN_D" not in Story(calcium_vitamin_d=True).codes()
    item = Story().item("CALCIUM_VITAMIN_D")
    assert (item.kind, item.assignee, item.evidence) == ("task", "coordinator", ["2", "3", "4"])


def test_calcitonin_needs_pain_4_before_day_28_and_not_in_use():
    assert Story(pain_nrs=4).days("CALCITONIN_ACUTE_PAIN") == [0]
    assert "CALCITONIN_ACUTE_PAIN" not in Story(pain_nrs=3).codes()
    assert "CALCITONIN_ACUTE_PAIN" not in Story(pain_nrs=8, analgesics=["calcitonin"]).codes()
    assert Story(enroll_day=27, pain_nrs=8).days("CALCITONIN_ACUTE_PAIN") == [27]
    assert "CALCITONIN_ACUTE_PAIN" not in Story(enroll_day=28, pain_nrs=8).codes()


def test_acetaminophen_info_only_for_mild_pain():
    for nrs, expected in [(0, False), (1, True), (3, True), (4, False)]:
        story = Story(pain_nrs=nrs)
        assert ("ACETAMINOPHEN_MILD_PAIN" in story.codes()) is expected, nrs
    assert Story(pain_nrs=2).item("ACETAMINOPHEN_MILD_PAIN").kind == "info"


def test_opioid_caution_for_older_patients_on_opioids():
    assert Story(age=65, analgesics=["opioid"]).days("OPIOID_CAUTION_ELDERLY") == [0]
    assert "OPIOID_CAUTION_ELDERLY" not in Story(age=64, analgesics=["opioid"]).codes()
    assert "OPIOID_CAUTION_ELDERLY" not in Story(age=80, analgesics=["nsaid"]).codes()
    item = Story(age=80, analgesics=["opioid"]).item("OPIOID_CAUTION_ELDERLY")
    assert (item.kind, item.priority, item.assignee) == ("flag", "high", "physician")


def test_red_flag_at_enrollment_escalates_to_surgical_consultation():
    story = Story(red_flags=["cord_compression"])
    item = story.item("SURGICAL_CONSULTATION")
    assert (item.day, item.kind, item.priority) == (0, "escalation", "urgent")
    assert "cauda equina" in item.detail
    assert "SURGICAL_CONSULTATION" not in Story().codes()


def test_red_flag_event_escalates_at_once_and_a_new_flag_escalates_again():
    # SPEC section 8 (amended): a red flag the open consultation does not name raises a new one;
    # the same flag again while it is open does not.
    story = Story().event(5, "red_flag", flag="instability").event(9, "red_flag", flag="instability")
    assert story.days("SURGICAL_CONSULTATION") == [5]
    story.event(9, "red_flag", flag="neurological_deficit")
    assert story.days("SURGICAL_CONSULTATION") == [5, 9]


def test_red_flag_events_before_the_amendment_escalated_once_per_milestone():
    # Rules revision 1 stays as it was, so episodes recorded on it replay unchanged.
    story = Story(rules_revision=1).event(5, "red_flag", flag="instability")
    story.event(9, "red_flag", flag="neurological_deficit")
    assert story.days("SURGICAL_CONSULTATION") == [5]
    story.event(30, "red_flag", flag="pathological_fracture")
    assert story.days("SURGICAL_CONSULTATION") == [5, 30]


def test_watchdog_fires_once_on_day_7_without_an_agent():
    story = Story().until(6)
    assert "PHARMACOTHERAPY_OVERDUE" not in story.codes()
    story.until(7)
    item = story.item("PHARMACOTHERAPY_OVERDUE")
    assert (item.day, item.kind, item.priority) == (7, "escalation", "urgent")
    assert "20%" in item.detail
    story.until(400)
    assert story.days("PHARMACOTHERAPY_OVERDUE") == [7]


def test_watchdog_satisfied_by_an_agent_within_7_days_and_closes_the_task():
    story = Story().event(6, "medication_started", agent="risedronate").until(60)
    assert "PHARMACOTHERAPY_OVERDUE" not in story.codes()
    assert "START_OSTEOPOROSIS_THERAPY" not in story.open_codes()
    assert any(c.code == "START_OSTEOPOROSIS_THERAPY" and c.status == "completed" for c in story.closures)


def test_agent_recorded_on_day_7_is_too_late_for_the_watchdog():
    # Due checks run at 09:00; the event comes at 12:00 (SPEC section 1).
    story = Story().event(7, "medication_started", agent="risedronate")
    assert story.days("PHARMACOTHERAPY_OVERDUE") == [7]


def test_watchdog_counts_from_the_enrollment_day():
    story = Story(enroll_day=40).until(46)
    assert "PHARMACOTHERAPY_OVERDUE" not in story.codes()
    assert story.until(47).days("PHARMACOTHERAPY_OVERDUE") == [47]


def test_enrollment_state_is_the_first_pain_assessment():
    story = Story(pain_nrs=6, analgesics=["opioid"])
    assert (story.state.latest_nrs, story.state.analgesics) == (6, ["opioid"])
    assert story.state.latest_pain_on.isoformat() == on(0)
