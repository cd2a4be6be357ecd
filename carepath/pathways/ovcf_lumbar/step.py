"""An ovcf-lumbar step: the engine's ``Step`` typed with this pathway's state and definition."""

from __future__ import annotations

from carepath.engine.step import Step
from carepath.pathways.ovcf_lumbar.definition import PathwayDefinition
from carepath.pathways.ovcf_lumbar.state import EpisodeState


class OvcfStep(Step[EpisodeState]):
    # Set when this step ran the month3 evaluation, so the event that caused it does not also
    # count as a re-check after the evaluation (SPEC 4.5).
    evaluated_now: bool = False

    @property
    def definition(self) -> PathwayDefinition:
        return self.state.definition

    @property
    def keys_by_period(self) -> bool:
        # Rules revision 1 (SPEC section 8 before its 2026-12-01 amendment): at most once per
        # milestone period for every code; kept exactly so that old histories replay.
        return self.state.rules_revision < 2
