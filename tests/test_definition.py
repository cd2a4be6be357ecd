"""The versioned pathway definition: parameters are data (SPEC *(param)*), codes are a contract."""

import json

import pytest
from pydantic import ValidationError

from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR
from carepath.pathways.ovcf_lumbar.definition import ACTION_CODES, PathwayDefinition, load_definition
from tests.support.story import Story


def _variant(**changes) -> PathwayDefinition:
    data = json.loads(load_definition().model_dump_json())
    for path, value in changes.items():
        node = data
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return PathwayDefinition.model_validate(data)


def test_v1_is_shipped_and_describes_every_code():
    definition = load_definition("ovcf-lumbar", 1)
    assert definition.key == "ovcf-lumbar.v1"
    assert 1 in OVCF_LUMBAR.versions()
    assert set(ACTION_CODES) <= set(definition.actions)
    assert [m.name for m in definition.milestones] == ["week4", "week6", "week8", "month3", "month12"]
    assert [m.day for m in definition.milestones] == [28, 42, 56, 91, 365]


def test_unknown_version_is_a_clear_error():
    with pytest.raises(LookupError, match="no version 99"):
        load_definition("ovcf-lumbar", 99)


def test_parameters_change_behaviour_without_code_changes():
    assert Story(definition=_variant(pharmacotherapy_watchdog_days=3)).until(3).days("PHARMACOTHERAPY_OVERDUE") == [3]
    older = _variant(thresholds__elderly_age=80)
    assert "OPIOID_CAUTION_ELDERLY" not in Story(definition=older, age=75, analgesics=["opioid"]).codes()
    tz = _variant(clock__timezone="Pacific/Auckland")
    assert tz.clock.timezone == "Pacific/Auckland"
    shorter = _variant(denosumab__interval_days=100, denosumab__reminder_lead_days=7)
    story = Story(definition=shorter, pain_nrs=2).event(2, "medication_started", agent="denosumab").until(120)
    assert story.days("DENOSUMAB_DOSE_DUE") == [95]


def test_a_broken_definition_is_refused():
    data = json.loads(load_definition().model_dump_json())
    del data["actions"]["NOT_RESOLVING"]
    with pytest.raises(ValidationError, match="NOT_RESOLVING"):
        PathwayDefinition.model_validate(data)
    with pytest.raises(ValidationError, match="time zone"):
        _variant(clock__timezone="Mars/Olympus")


def test_every_raised_code_is_a_contract_code_a_milestone_or_a_phase_change():
    story = (
        Story(age=80, analgesics=["opioid"], red_flags=["instability"], pain_nrs=8)
        .event(3, "medication_started", agent="denosumab")
        .assess(30, 7, ["opioid"], mobility="bed_rest", symptoms_changed=True)
        .event(40, "imaging", modality="xray", new_fracture=True)
        .until(420)
    )
    milestones = {m.name for m in load_definition().milestones}
    for item in story.items:
        if item.kind == "phase":
            assert "->" in item.code
        elif item.kind == "skipped":
            assert item.code in milestones
        else:
            assert item.code in ACTION_CODES
    keys = [i.key for i in story.items]
    assert len(keys) == len(set(keys)), "a code was raised twice for one milestone"


def test_decoded_workflow_inputs_share_one_definition_instance_per_version():
    # Thousands of sleeping episodes each keep their decoded input in the worker; they must not
    # each hold a private copy of the definition (measured ~40 KiB each).
    from carepath.pathways.ovcf_lumbar.state import EpisodeState
    from workflows.contracts import EpisodeStart, Migration

    v1, v2 = (load_definition(version=v).model_dump(mode="json") for v in (1, 2))
    first, second = (EpisodeStart.model_validate_json(json.dumps({"episode_id": "e1", "definition": v1})) for _ in "ab")
    migrations = [Migration.model_validate_json(json.dumps({"reason": "r", "definition": v2})) for _ in "ab"]

    assert first.definition is second.definition
    assert first.definition == load_definition(version=1)
    assert migrations[0].definition is migrations[1].definition is not first.definition
    assert EpisodeState.model_fields["definition"].metadata, "carried state interns its definition too"
