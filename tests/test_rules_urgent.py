"""Rules revision 3: urgent items are due the day they are raised, so they go overdue like any
task; running episodes take it at their next decision (docs/rule-changes.md)."""

from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.pathways.ovcf_lumbar.definition import load_definition
from tests.support.story import Story

URGENT = {"PHARMACOTHERAPY_OVERDUE", "SURGICAL_CONSULTATION", "NEW_FRACTURE"}


def _without_due(definition):
    """A definition as episodes enrolled before revision 3 carry it: urgent items due nowhere."""
    actions = {
        c: a.model_copy(update={"due_in_days": None, "renotify_after_hours": None}) if c in URGENT else a
        for c, a in definition.actions.items()
    }
    return definition.model_copy(update={"actions": actions})


def test_every_urgent_action_is_due_the_day_it_is_raised_and_renotifies_after_4_hours():
    for version in (1, 2):
        actions = load_definition(version=version).actions
        urgent = {c for c, a in actions.items() if a.priority == "urgent" and a.kind != "info"}
        assert urgent == URGENT
        assert all(actions[c].due_in_days == 0 and actions[c].renotify_after_hours == 4 for c in urgent)


def test_a_red_flag_consultation_and_the_watchdog_are_due_the_day_raised():
    story = Story().event(10, "red_flag", flag="cord_compression").until(20)
    consultation = story.item("SURGICAL_CONSULTATION")
    assert consultation.day == 10 and consultation.due_on == consultation.on
    overdue = story.item("PHARMACOTHERAPY_OVERDUE")
    assert overdue.due_on == overdue.on


def test_revision_2_keeps_urgent_items_undated_and_the_upgrade_dates_the_next_one():
    story = Story(rules_revision=2, definition=_without_due(load_definition(version=1)))
    story.event(10, "red_flag", flag="cord_compression")
    assert story.item("SURGICAL_CONSULTATION").due_on is None  # as recorded before the fix
    story.state = OVCF_LUMBAR.upgrade(story.state)
    assert story.state.rules_revision == 3
    assert story.state.definition.actions["SURGICAL_CONSULTATION"].due_in_days == 0
    story.event(12, "imaging", modality="xray", new_fracture=True)
    fracture = story.item("NEW_FRACTURE")
    assert fracture.due_on == fracture.on
    # What was raised stays as it was.
    assert [i.due_on for i in story.items if i.code == "SURGICAL_CONSULTATION"] == [None]


def test_an_upgrade_to_revision_2_only_leaves_due_dates_alone():
    story = Story(rules_revision=1, definition=_without_due(load_definition(version=1)))
    upgraded = OVCF_LUMBAR.upgrade(story.state, 2)
    assert upgraded.rules_revision == 2
    assert upgraded.definition.actions["SURGICAL_CONSULTATION"].due_in_days is None
    assert upgraded.definition.actions["SURGICAL_CONSULTATION"].repeat.when == "unless_open"
