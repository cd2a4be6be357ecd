"""SPEC section 4: milestones, reassessments, the 3-month evaluation, denosumab, imaging."""

from tests.support.story import Story


def test_pain_reassessment_task_due_in_3_days_with_notification():
    item = Story().until(28).item("PAIN_REASSESSMENT")
    assert (item.kind, item.priority, item.assignee) == ("task", "routine", "coordinator")
    assert item.due_on is not None and (item.due_on - item.on).days == 3
    assert item.notify and item.milestone == "week4"


def test_assessment_closes_the_open_reassessment():
    story = Story().until(28).assess(30, 4, ["nsaid"])
    assert "PAIN_REASSESSMENT" not in story.open_codes()
    story.until(40)
    assert "PAIN_REASSESSMENT_OVERDUE" not in story.codes()


def test_assessment_before_a_milestone_does_not_close_it():
    story = Story().assess(27, 4, ["nsaid"]).until(35)
    assert story.days("PAIN_REASSESSMENT_OVERDUE") == [35]


def test_overdue_fires_at_nine_on_day_n_plus_7_even_if_recorded_later_that_day():
    late = Story().until(28).assess(35, 4, ["nsaid"])
    assert late.days("PAIN_REASSESSMENT_OVERDUE") == [35]
    in_time = Story().until(28).assess(34, 4, ["nsaid"]).until(41)
    assert "PAIN_REASSESSMENT_OVERDUE" not in in_time.codes()


def test_overdue_escalation_once_per_milestone():
    story = Story().until(120)
    overdue = [i for i in story.items if i.code == "PAIN_REASSESSMENT_OVERDUE"]
    assert [(i.day, i.milestone) for i in overdue] == [
        (35, "week4"),
        (49, "week6"),
        (63, "week8"),
        (98, "month3"),
    ]
    assert all(i.kind == "escalation" and i.priority == "high" for i in overdue)


def test_new_reassessment_supersedes_an_unanswered_one():
    story = Story().until(42)
    open_reassessments = [t for t in story.state.open_tasks if t.code == "PAIN_REASSESSMENT"]
    assert [t.milestone for t in open_reassessments] == ["week6"]
    assert any(c.milestone == "week4" and c.status == "cancelled" for c in story.closures)


def test_stop_calcitonin_at_week4_only_when_in_use():
    assert Story(analgesics=["calcitonin"]).until(28).days("STOP_CALCITONIN") == [28]
    started = Story().event(2, "medication_started", agent="calcitonin").until(28)
    assert started.days("STOP_CALCITONIN") == [28]
    assert "STOP_CALCITONIN" not in Story().until(60).codes()


def test_not_resolving_when_week8_reassessment_recorded_with_pain():
    story = Story().until(56).assess(57, 6, ["nsaid"])
    item = story.item("NOT_RESOLVING")
    assert (item.day, item.kind, item.priority) == (57, "flag", "high")
    assert "Do not assume all pain is from the acute fracture" in item.detail


def test_not_resolving_when_week8_reassessment_goes_overdue():
    story = Story(pain_nrs=5).until(63)
    assert story.days("NOT_RESOLVING") == [63]
    quiet = Story(pain_nrs=5).assess(50, 3, ["nsaid"]).until(63)
    assert "NOT_RESOLVING" not in quiet.codes()


def test_resolved_skips_remaining_pain_milestones_on_their_own_days():
    story = Story().until(28).assess(30, 2, [])
    assert story.phase == "resolved"
    assert story.days("conservative->resolved") == [30]
    story.until(400)
    assert [(i.code, i.day) for i in story.items if i.kind == "skipped"] == [
        ("week6", 42),
        ("week8", 56),
        ("month3", 91),
    ]
    assert story.days("TWELVE_MONTH_REVIEW") == [365]
    assert story.days("resolved->completed") == [365]
    assert "AUGMENTATION_REVIEW" not in story.codes()


def test_resolved_needs_no_analgesics_in_use():
    assert Story().assess(10, 1, ["acetaminophen"]).phase == "acute"
    assert Story().assess(10, 3, []).phase == "acute"
    assert Story().assess(10, 2, []).phase == "resolved"


def test_month3_reassessment_runs_the_evaluation_instead_of_resolving():
    story = Story().until(91).assess(92, 1, [])
    assert story.phase == "conservative_success"
    assert "conservative->resolved" not in story.codes()


def test_evaluation_waits_for_the_month3_reassessment():
    story = Story(pain_nrs=7, analgesics=["opioid"]).until(97)
    assert "AUGMENTATION_REVIEW" not in story.codes()
    assert story.phase == "evaluation"
    story.until(98)
    assert story.days("AUGMENTATION_REVIEW") == [98]
    assert story.days("PAIN_REASSESSMENT_OVERDUE")[-1] == 98


def test_augmentation_never_before_month3_whatever_is_recorded():
    story = (
        Story(contraindications=["nsaid", "opioid"])
        .event(10, "hospital_admission")
        .event(20, "parenteral_narcotics")
        .assess(60, 9, ["opioid"], oral_analgesia_adequate=False)
        .until(90)
    )
    assert "AUGMENTATION_REVIEW" not in story.codes()


def _evaluated(**enrollment):
    return Story(**enrollment).until(91)


def test_each_augmentation_criterion():
    refractory = _evaluated().assess(92, 4, ["nsaid"])
    assert refractory.days("AUGMENTATION_REVIEW") == [92]
    assert "pain refractory to oral analgesics" in refractory.item("AUGMENTATION_REVIEW").detail
    inadequate = _evaluated().assess(92, 3, ["nsaid"], oral_analgesia_adequate=False)
    assert "oral analgesia recorded as inadequate" in inadequate.item("AUGMENTATION_REVIEW").detail
    contraindicated = _evaluated(contraindications=["nsaid", "opioid"]).assess(92, 1, [])
    assert "contraindication" in contraindicated.item("AUGMENTATION_REVIEW").detail
    only_one = _evaluated(contraindications=["nsaid"]).assess(92, 1, [])
    assert "AUGMENTATION_REVIEW" not in only_one.codes()
    admitted = Story().event(10, "hospital_admission").until(91).assess(92, 1, [])
    assert "hospital admission" in admitted.item("AUGMENTATION_REVIEW").detail
    parenteral = Story().event(10, "parenteral_narcotics").until(91).assess(92, 1, [])
    assert "parenteral narcotics" in parenteral.item("AUGMENTATION_REVIEW").detail


def test_calcitonin_alone_is_not_oral_analgesia():
    story = _evaluated().assess(92, 6, ["calcitonin"])
    assert "AUGMENTATION_REVIEW" not in story.codes()
    assert story.phase == "conservative_success"


def test_review_carries_the_controversy_side_by_side():
    detail = _evaluated().assess(92, 6, ["opioid"]).item("AUGMENTATION_REVIEW").detail
    for side in ["AAOS recommends against", "ACR and SNIS support", "kyphoplasty", "short term"]:
        assert side in detail


def test_criteria_rechecked_after_the_evaluation():
    story = _evaluated().assess(92, 2, ["acetaminophen"])
    assert story.phase == "conservative_success"
    story.event(150, "hospital_admission")
    assert story.days("AUGMENTATION_REVIEW") == [150]
    assert story.days("conservative_success->augmentation_review") == [150]
    story.event(160, "parenteral_narcotics")
    assert story.days("AUGMENTATION_REVIEW") == [150]


def test_nerve_root_block_option_needs_l3_or_l4_acute_injury_and_symptoms():
    yes = _evaluated(levels=["L4"], acute_injury=True, correlating_symptoms=True).assess(92, 6, ["opioid"])
    item = yes.item("NERVE_ROOT_BLOCK_OPTION")
    assert (item.day, item.kind, item.evidence) == (92, "info", ["1", "6"])
    assert "dorsal root ganglion" in item.detail
    for enrollment in (
        {"levels": ["L2"], "acute_injury": True, "correlating_symptoms": True},
        {"levels": ["L3"], "acute_injury": False, "correlating_symptoms": True},
        {"levels": ["L3"], "acute_injury": True, "correlating_symptoms": False},
    ):
        assert "NERVE_ROOT_BLOCK_OPTION" not in _evaluated(**enrollment).assess(92, 6, ["opioid"]).codes()
    no_review = _evaluated(levels=["L3"], acute_injury=True, correlating_symptoms=True).assess(92, 1, [])
    assert "NERVE_ROOT_BLOCK_OPTION" not in no_review.codes()


def test_obtain_mri_at_month3_when_pain_persists_and_imaging_is_stale():
    stale = _evaluated().assess(92, 5, ["nsaid"])
    assert stale.days("OBTAIN_MRI") == [92]
    assert "marrow oedema" in stale.item("OBTAIN_MRI").detail
    fresh = Story().event(30, "imaging", modality="xray").until(91).assess(92, 5, ["nsaid"])
    assert "OBTAIN_MRI" not in fresh.codes()
    settled = _evaluated().assess(92, 3, ["nsaid"])
    assert "OBTAIN_MRI" not in settled.codes()
    no_imaging = _evaluated(imaging=[]).assess(92, 5, ["nsaid"])
    assert no_imaging.days("OBTAIN_MRI") == [92]


def test_obtain_mri_when_symptoms_change_any_time_and_mri_closes_it():
    story = Story().assess(12, 5, ["nsaid"], symptoms_changed=True)
    assert story.days("OBTAIN_MRI") == [12]
    story.event(14, "imaging", modality="mri")
    assert "OBTAIN_MRI" not in story.open_codes()


def test_denosumab_reminders_14_days_before_each_dose_across_a_year():
    story = Story(pain_nrs=2).event(2, "medication_started", agent="denosumab").until(400)
    assert story.days("DENOSUMAB_DOSE_DUE") == [170]  # dose due day 184, no dose given yet
    item = story.item("DENOSUMAB_DOSE_DUE")
    assert (item.kind, item.priority, item.assignee) == ("task", "high", "coordinator")
    given = Story(pain_nrs=2).event(2, "medication_started", agent="denosumab")
    given.event(184, "dose_given", agent="denosumab").until(400)
    assert given.days("DENOSUMAB_DOSE_DUE") == [170, 352]
    assert given.phase == "maintenance"
    given.event(366, "dose_given", agent="denosumab").until(600)
    assert given.days("DENOSUMAB_DOSE_DUE") == [170, 352, 534]


def test_denosumab_from_enrollment_uses_the_last_dose_date():
    story = Story(osteoporosis_therapy={"agent": "denosumab", "last_dose_on": "2026-02-14"})  # day -16
    story.until(200)
    assert story.days("DENOSUMAB_DOSE_DUE") == [152]
    assert story.item("DENOSUMAB_DOSE_DUE").due_on.isoformat() == "2026-08-15"


def test_denosumab_reminder_already_passed_is_raised_at_enrollment():
    story = Story(enroll_day=20, osteoporosis_therapy={"agent": "denosumab", "last_dose_on": "2025-08-01"})
    assert story.days("DENOSUMAB_DOSE_DUE") == [20]


def test_stopping_denosumab_in_maintenance_completes_the_episode():
    story = Story(pain_nrs=2).event(2, "medication_started", agent="denosumab").until(366)
    assert story.phase == "maintenance"
    story.event(370, "medication_stopped", agent="denosumab")
    assert story.phase == "completed"
    assert story.days("maintenance->completed") == [370]
