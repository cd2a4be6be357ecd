"""Pathway versions: new enrollments get the newest, running episodes keep theirs, and a
deliberate migration moves one episode to a newer version on its timeline and audit trail."""

from __future__ import annotations

from datetime import time

import pytest

from carepath.errors import InvalidInput
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.pathways.ovcf_lumbar.definition import load_definition
from tests.support.story import Story, at

V1, V2 = load_definition(version=1), load_definition(version=2)


def test_v2_changes_one_parameter_and_says_so():
    assert OVCF_LUMBAR.versions() == [1, 2]
    assert load_definition().version == 2  # the newest is what new enrollments get
    assert (V1.denosumab.reminder_lead_days, V2.denosumab.reminder_lead_days) == (14, 21)
    assert "21 days" in V2.changes
    differing = {k for k in type(V1).model_fields if getattr(V1, k) != getattr(V2, k)}
    assert differing == {"version", "changes", "denosumab"}


def _on_denosumab(definition):
    return Story(definition=definition, pain_nrs=2).event(2, "medication_started", agent="denosumab")


def test_each_version_times_the_reminder_by_its_own_parameter():
    assert _on_denosumab(V1).until(200).days("DENOSUMAB_DOSE_DUE") == [170]
    assert _on_denosumab(V2).until(200).days("DENOSUMAB_DOSE_DUE") == [163]


def test_migration_applies_new_parameters_from_then_on_and_is_recorded():
    story = _on_denosumab(V1).until(100)
    story.state, changes = OVCF_LUMBAR.migrate(story.state, V2, at(100, time(12)), "physician:ames", "clinic policy")
    story.items += changes.items
    assert story.state.definition.key == "ovcf-lumbar.v2"
    record = story.item("PATHWAY_MIGRATED")
    assert (record.day, record.kind) == (100, "info")
    assert "ovcf-lumbar.v1 -> ovcf-lumbar.v2 by physician:ames: clinic policy" in record.title
    story.until(200)
    assert story.days("DENOSUMAB_DOSE_DUE") == [163]


def test_migration_is_refused_sideways_backwards_or_after_the_end():
    story = _on_denosumab(V2)
    with pytest.raises(InvalidInput, match="newer version"):
        OVCF_LUMBAR.migrate(story.state, V1, at(3, time(12)), "x", "y")
    done = Story(definition=V1).event(2, "medication_started", agent="alendronate").until(400)
    with pytest.raises(InvalidInput) as caught:
        OVCF_LUMBAR.migrate(done.state, V2, at(400, time(12)), "x", "y")
    assert caught.value.errors[0].field == "episode"
