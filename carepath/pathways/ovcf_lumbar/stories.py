"""ovcf-lumbar's stories (``carepath simulate``, SCENARIOS.md): an enrollment written in days since
day 0 instead of dates, and the scenario keys that name those days."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from pydantic import Field

from carepath.engine.inputs import InputModel
from carepath.pathways.ovcf_lumbar.inputs import CurrentTherapy, Enrollment, EnrollmentBase, ImagingStudy
from carepath.pathways.ovcf_lumbar.vocabulary import Modality

# The dated fields the rules report, and what a story calls them instead.
STORY_FIELDS = {"performed_on": "day", "last_dose_on": "last_dose_day"}

Day = Annotated[int, Field(strict=True)]


class ScenarioImaging(InputModel):
    day: Day
    modality: Modality


class ScenarioTherapy(InputModel):
    agent: str
    last_dose_day: Day | None = None


class ScenarioEnrollment(EnrollmentBase):
    osteoporosis_therapy: ScenarioTherapy | None = None
    imaging: list[ScenarioImaging] = []

    def dated(self, identified_on: date) -> Enrollment:
        def on(day: int) -> date:
            return identified_on + timedelta(days=day)

        therapy = self.osteoporosis_therapy
        return Enrollment(
            **self.model_dump(exclude={"osteoporosis_therapy", "imaging"}),
            identified_on=identified_on,
            osteoporosis_therapy=None
            if therapy is None
            else CurrentTherapy(
                agent=therapy.agent,
                last_dose_on=None if therapy.last_dose_day is None else on(therapy.last_dose_day),
            ),
            imaging=[ImagingStudy(performed_on=on(i.day), modality=i.modality) for i in self.imaging],
        )
