"""The pathway rules: pure functions from (state, input, now) to (new state, changes).

No I/O and no Temporal here, so the rules are unit-tested on their own and the workflow stays
thin: it sleeps until ``next_due``, calls ``advance`` and ``apply_event`` and records the
``Changes`` through activities. Every number comes from the episode's ``PathwayDefinition``.

Entry points: ``validate_enrollment``, ``enroll``, ``next_due``, ``advance``,
``validate_event``, ``apply_event``. Functions never mutate the state they are given.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from carepath.errors import FieldError, InvalidInput
from carepath.pathway.definition import MilestoneSpec, PathwayDefinition, RepeatSpec, shared
from carepath.pathway.inputs import (
    ClinicianNote,
    DoseGiven,
    Enrollment,
    Event,
    HospitalAdmission,
    Imaging,
    MedicationStarted,
    MedicationStopped,
    Override,
    PainAssessment,
    ParenteralNarcotics,
    RedFlagRaised,
    Withdraw,
)
from carepath.pathway.state import (
    ENROLLMENT_PERIOD,
    RULES_REVISION,  # re-exported: callers name the revision they enroll on
    Changes,
    EpisodeState,
    MilestoneProgress,
    OpenTask,
    TaskClosure,
    TimelineEntry,
)
from carepath.pathway.vocabulary import ACTIONABLE_KINDS, FINAL_PHASES, Phase

# Phases on the conservative track that a milestone may move forward (SPEC section 2).
_TRACK: tuple[str, ...] = ("acute", "conservative")


# ---- clock ----------------------------------------------------------------------------------


def local_date(definition: PathwayDefinition, at: datetime) -> date:
    """The clinic's calendar date at instant ``at``."""
    return at.astimezone(ZoneInfo(definition.clock.timezone)).date()


def action_time(definition: PathwayDefinition, on: date) -> datetime:
    """When the day's milestone actions and due checks run (09:00 clinic time by default)."""
    return datetime.combine(on, definition.clock.action_time, tzinfo=ZoneInfo(definition.clock.timezone))


# ---- enrollment -----------------------------------------------------------------------------


def validate_enrollment(definition: PathwayDefinition, enrollment: Enrollment, now: datetime) -> None:
    """Checks that need the definition or the clock; raises ``InvalidInput`` naming fields."""
    today = local_date(definition, now)
    errors: list[FieldError] = []
    age_days = (today - enrollment.identified_on).days
    if age_days < 0:
        errors.append(FieldError("identified_on", f"must not be in the future (today is {today})"))
    elif age_days > definition.clock.max_backdate_days:
        errors.append(
            FieldError(
                "identified_on",
                f"is {age_days} days ago; enrollment may be back-dated at most "
                f"{definition.clock.max_backdate_days} days",
            )
        )
    errors += _unknown("analgesics", enrollment.analgesics, definition.analgesics, "analgesic")
    errors += _unknown("red_flags", enrollment.red_flags, definition.red_flags, "red flag")
    therapy = enrollment.osteoporosis_therapy
    if therapy is not None:
        if therapy.agent not in definition.osteoporosis_agents:
            errors.append(
                FieldError(
                    "osteoporosis_therapy.agent",
                    f"unknown osteoporosis agent {therapy.agent!r}; known: {', '.join(definition.osteoporosis_agents)}",
                )
            )
        if therapy.last_dose_on is not None and therapy.last_dose_on > today:
            errors.append(FieldError("osteoporosis_therapy.last_dose_on", "must not be in the future"))
    for i, study in enumerate(enrollment.imaging):
        if study.performed_on > today:
            errors.append(FieldError(f"imaging[{i}].performed_on", "must not be in the future"))
    if errors:
        raise InvalidInput(errors)


def _unknown(field: str, values: list[str], known: dict[str, object], what: str) -> list[FieldError]:
    return [
        FieldError(f"{field}[{i}]", f"unknown {what} {value!r}; known: {', '.join(known)}")
        for i, value in enumerate(values)
        if value not in known
    ]


def implied_phase(definition: PathwayDefinition, enroll_day: int) -> Phase:
    """The phase an episode starts in: an episode enrolled late starts where its day implies."""
    phase: Phase = "acute"
    for spec in definition.milestones:
        if spec.enters_phase is not None and spec.day <= enroll_day:
            phase = spec.enters_phase
    return phase


def enroll(
    definition: PathwayDefinition,
    enrollment: Enrollment,
    episode_id: str,
    now: datetime,
    rules_revision: int = RULES_REVISION,
) -> tuple[EpisodeState, Changes]:
    """A new episode and its baseline actions (SPEC section 3), skipped milestones included.

    ``rules_revision`` is the newest unless the caller replays an episode enrolled before it.
    """
    validate_enrollment(definition, enrollment, now)
    today = local_date(definition, now)
    enroll_day = (today - enrollment.identified_on).days
    therapy = enrollment.osteoporosis_therapy
    denosumab = definition.denosumab.agent
    state = EpisodeState(
        episode_id=episode_id,
        definition=definition,
        rules_revision=rules_revision,
        identified_on=enrollment.identified_on,
        enrolled_on=today,
        age=enrollment.patient.age,
        levels=list(enrollment.fracture.levels),
        acute_injury=enrollment.fracture.acute_injury,
        correlating_symptoms=enrollment.fracture.correlating_symptoms,
        contraindications=list(enrollment.contraindications),
        analgesics=list(enrollment.analgesics),
        latest_nrs=enrollment.pain_nrs,
        latest_pain_on=today,
        osteoporosis_agents=[therapy.agent] if therapy else [],
        denosumab_last_dose=therapy.last_dose_on if therapy and therapy.agent == denosumab else None,
        latest_imaging_on=max((s.performed_on for s in enrollment.imaging), default=None),
        phase=implied_phase(definition, enroll_day),
        milestones={spec.name: MilestoneProgress() for spec in definition.milestones},
    )
    step = _Step(state, today)
    step.baseline(enrollment, enroll_day)
    for spec in definition.milestones:
        if action_time(definition, enrollment.identified_on + timedelta(days=spec.day)) <= now:
            step.skip_milestone(spec, f"enrolled on day {enroll_day}, after the milestone's day {spec.day}")
    if state.milestones[_evaluation_milestone(definition).name].status == "skipped":
        step.evaluate(_evaluation_milestone(definition))
    if state.on_denosumab and state.denosumab_last_dose is None:
        step.raise_(
            "DENOSUMAB_DOSE_DUE",
            milestone="dose:unknown",
            extra="The date of the last dose is not known: confirm it and when the next is due.",
        )
    # Anything timed that is already due (a denosumab reminder whose day has passed) is raised
    # now, dated on the enrollment day.
    state, more = advance(state, now)
    step.changes.extend(more)
    return state, step.changes


# ---- the clock moves ------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class _Due:
    at: datetime
    rank: int  # milestones first, then reminders, then due checks (SPEC section 1)
    what: str
    ref: str


def _due_points(state: EpisodeState) -> list[_Due]:
    if state.finished:
        return []
    d = state.definition
    points: list[_Due] = []
    for spec in d.milestones:
        progress = state.milestones[spec.name]
        day = state.identified_on + timedelta(days=spec.day)
        if progress.status in ("pending", "skip_requested"):
            points.append(_Due(action_time(d, day), 0, "milestone", spec.name))
        if progress.reassessment == "open":
            overdue_on = day + timedelta(days=d.reassessment.overdue_after_days)
            points.append(_Due(action_time(d, overdue_on), 2, "reassessment_due", spec.name))
    if state.watchdog == "armed":
        check_on = state.enrolled_on + timedelta(days=d.pharmacotherapy_watchdog_days)
        points.append(_Due(action_time(d, check_on), 3, "watchdog", ""))
    due = _next_dose_due(state)
    if due is not None and state.denosumab_reminded_for != due:
        remind_on = due - timedelta(days=d.denosumab.reminder_lead_days)
        points.append(_Due(action_time(d, remind_on), 1, "dose_reminder", due.isoformat()))
    return sorted(points)


def _next_dose_due(state: EpisodeState) -> date | None:
    if not state.on_denosumab or state.denosumab_last_dose is None:
        return None
    return state.denosumab_last_dose + timedelta(days=state.definition.denosumab.interval_days)


def next_due(state: EpisodeState) -> datetime | None:
    """When the clock next has something to do for this episode (None: nothing, ever)."""
    points = _due_points(state)
    return points[0].at if points else None


def advance(state: EpisodeState, now: datetime) -> tuple[EpisodeState, Changes]:
    """Run every timed action due at or before ``now``, in order."""
    state = _copy(state)
    changes = Changes()
    while True:
        due = [p for p in _due_points(state) if p.at <= now]
        if not due:
            return state, changes
        point = due[0]
        # Never date anything before enrollment: a reminder whose day had passed at
        # enrollment is raised on the enrollment day.
        on = max(local_date(state.definition, point.at), state.enrolled_on)
        step = _Step(state, on)
        step.run_due(point)
        changes.extend(step.changes)


def upgrade(state: EpisodeState, shipped: PathwayDefinition | None) -> EpisodeState:
    """The same episode, deciding from now on by the newest rules revision (SPEC section 8 as
    amended on 2026-12-01). What was raised stays as it was.

    An episode carries the definition it was enrolled on, recorded before actions had a
    ``repeat`` policy; ``shipped`` (the same id and version as shipped now) supplies the amended
    policies, and nothing else of the carried definition changes.
    """
    if state.rules_revision >= RULES_REVISION:
        return state
    definition = state.definition
    if shipped is not None and shipped.key == definition.key:
        actions = {
            code: spec.model_copy(update={"repeat": shipped.actions[code].repeat}) if code in shipped.actions else spec
            for code, spec in definition.actions.items()
        }
        definition = shared(definition.model_copy(update={"actions": actions}))
    return state.model_copy(update={"rules_revision": RULES_REVISION, "definition": definition})


def _copy(state: EpisodeState) -> EpisodeState:
    """A deep copy that shares the definition: it is immutable, and copying it every step would
    cost ~40 KiB and its CPU per step per episode."""
    return copy.deepcopy(state, {id(state.definition): state.definition})


# ---- events ---------------------------------------------------------------------------------


def validate_event(state: EpisodeState, event: Event, now: datetime) -> None:
    """Raise ``InvalidInput`` naming the field if ``event`` may not be applied at ``now``."""
    state, _ = advance(state, now)
    d = state.definition
    if state.finished:
        raise InvalidInput.one("episode", f"episode is {state.phase}; no further events are accepted")
    today = local_date(d, now)
    errors: list[FieldError] = []
    if event.occurred_on < state.identified_on:
        errors.append(FieldError("occurred_on", f"must not be before day 0 (identified_on {state.identified_on})"))
    elif event.occurred_on > today:
        errors.append(FieldError("occurred_on", f"must not be in the future (today is {today})"))
    match event:
        case PainAssessment():
            errors += _unknown("analgesics", event.analgesics, d.analgesics, "analgesic")
        case MedicationStarted() | MedicationStopped() | DoseGiven():
            if event.agent not in d.known_agents:
                errors.append(FieldError("agent", f"unknown agent {event.agent!r}; known: {', '.join(d.known_agents)}"))
        case RedFlagRaised():
            if event.flag not in d.red_flags:
                errors.append(FieldError("flag", f"unknown red flag {event.flag!r}; known: {', '.join(d.red_flags)}"))
        case Override():
            errors += _override_errors(state, event)
    if errors:
        raise InvalidInput(errors)


def _override_errors(state: EpisodeState, event: Override) -> list[FieldError]:
    if event.skip_milestone is not None:
        progress = state.milestones.get(event.skip_milestone)
        if progress is None:
            return [FieldError("skip_milestone", f"unknown milestone; known: {', '.join(state.milestones)}")]
        if progress.status != "pending":
            return [FieldError("skip_milestone", f"milestone {event.skip_milestone} is not pending")]
    if event.close_task is not None and not any(t.code == event.close_task for t in state.open_tasks):
        return [FieldError("close_task", f"no open task {event.close_task!r} on this episode")]
    return []


def apply_event(state: EpisodeState, event: Event, now: datetime) -> tuple[EpisodeState, Changes]:
    """Validate, run what the clock owes first, then apply ``event`` (SPEC section 5)."""
    validate_event(state, event, now)
    state, changes = advance(state, now)
    step = _Step(state, local_date(state.definition, now))
    step.apply(event)
    changes.extend(step.changes)
    return state, changes


def close_task(
    state: EpisodeState, code: str, milestone: str, status: str, reason: str, now: datetime
) -> tuple[EpisodeState, Changes]:
    """A person completes or cancels an open task (``status`` ``completed`` or ``cancelled``)."""
    state, changes = advance(state, now)
    if not any(t.code == code and t.milestone == milestone for t in state.open_tasks):
        raise InvalidInput.one("task", f"{code} for {milestone} is not open on this episode")
    if status not in ("completed", "cancelled"):
        raise InvalidInput.one("status", "must be completed or cancelled")
    step = _Step(state, local_date(state.definition, now))
    step.close_by_person(code, milestone, status, reason)
    changes.extend(step.changes)
    return state, changes


def migrate(
    state: EpisodeState, target: PathwayDefinition, now: datetime, actor: str, reason: str
) -> tuple[EpisodeState, Changes]:
    """Move a running episode to a newer version of its pathway, deliberately and on the record.

    What was raised stays; from now on the new parameters apply (e.g. the next reminder's day).
    """
    current = state.definition
    if target.id != current.id:
        raise InvalidInput.one("version", f"episode follows {current.id}, not {target.id}")
    if target.version <= current.version:
        raise InvalidInput.one("version", f"episode is on v{current.version}; migrate only to a newer version")
    missing = set(state.milestones) - {m.name for m in target.milestones}
    if missing:
        raise InvalidInput.one("version", f"v{target.version} lacks milestones {sorted(missing)}")
    state, changes = advance(state, now)
    if state.finished:
        raise InvalidInput.one("episode", f"episode is {state.phase}; nothing to migrate")
    state.definition = target
    step = _Step(state, local_date(target, now))
    title = f"Pathway {current.key} -> {target.key} by {actor}: {reason}"
    step._record("PATHWAY_MIGRATED", "info", title, f"migrate:v{target.version}")
    changes.extend(step.changes)
    return state, changes


# ---- one step -------------------------------------------------------------------------------


def _evaluation_milestone(definition: PathwayDefinition) -> MilestoneSpec:
    return next(m for m in definition.milestones if m.after_reassessment == "evaluation")


class _Step:
    """Mutates one (already copied) state on one clinic day and collects the changes."""

    def __init__(self, state: EpisodeState, on: date) -> None:
        self.s = state
        self.d = state.definition
        self.on = on
        self.changes = Changes()
        self.evaluated_now = False
        # The occasion of items this step raises on an event's account (rules revision 2): what
        # raised them, e.g. ``red_flag-day250``; the enrollment's are ``enrollment``.
        self.trigger = state.period

    # -- recording --

    def _append(self, item: TimelineEntry) -> None:
        self.s.raised.append(item.key)
        self.changes.items.append(item)

    def raise_(
        self,
        code: str,
        milestone: str | None = None,
        extra: str = "",
        due_on: date | None = None,
        subjects: list[str] | None = None,
    ) -> bool:
        """Raise ``code`` for its occasion, as often as SPEC section 8 allows; True if raised.

        ``milestone`` is the occasion (default: what raised this step); ``subjects`` are what the
        item names (red flags), for a code whose new subjects raise it again.
        """
        spec = self.d.actions[code]
        subjects = subjects or []
        if self.s.rules_revision >= 2 and spec.repeat.when == "unless_open":
            if self._still_open(code, subjects, spec.repeat):
                return False
            key = self._fresh_occasion(code, milestone or self.trigger)
        else:
            # Once per occasion; under revision 1 an event's occasion is the milestone period.
            key = milestone or (self.s.period if self.s.rules_revision < 2 else self.trigger)
            if f"{code}@{key}" in self.s.raised:
                return False
        if due_on is None and spec.due_in_days is not None:
            due_on = self.on + timedelta(days=spec.due_in_days)
        detail = f"{spec.detail} {extra}".strip() if extra else spec.detail
        self._append(
            TimelineEntry(
                code=code,
                kind=spec.kind,
                priority=spec.priority,
                assignee=spec.assignee,
                title=spec.title,
                detail=detail,
                evidence=list(spec.evidence),
                day=self.s.day_of(self.on),
                on=self.on,
                milestone=key,
                due_on=due_on if spec.kind in ACTIONABLE_KINDS else None,
                notify=spec.notify,
            )
        )
        if spec.kind in ACTIONABLE_KINDS:
            self.s.open_tasks.append(OpenTask(code=code, milestone=key, subjects=subjects))
        return True

    def _still_open(self, code: str, subjects: list[str], repeat: RepeatSpec) -> bool:
        """An open item with ``code`` stays the one to act on, unless the trigger names
        something new that no open item names and the policy raises on new subjects."""
        still_open = [task for task in self.s.open_tasks if task.code == code]
        if not still_open:
            return False
        if not repeat.new_subject_raises:
            return True
        named = {subject for task in still_open for subject in task.subjects}
        return set(subjects) <= named

    def _fresh_occasion(self, code: str, occasion: str) -> str:
        """``occasion``, or ``occasion-2``, ``-3``.. if an item of ``code`` already has it (two
        red flags recorded for one day), so every raised item has its own identity."""
        candidate, n = occasion, 1
        while f"{code}@{candidate}" in self.s.raised:
            n += 1
            candidate = f"{occasion}-{n}"
        return candidate

    def _record(self, code: str, kind: str, title: str, milestone: str) -> None:
        self._append(
            TimelineEntry(
                code=code,
                kind=kind,  # type: ignore[arg-type]  # "phase", "skipped" or "info"
                priority="routine",
                assignee=None,
                title=title,
                day=self.s.day_of(self.on),
                on=self.on,
                milestone=milestone,
            )
        )

    def set_phase(self, phase: Phase, why: str) -> None:
        old = self.s.phase
        if old == phase:
            return
        self.s.phase = phase
        self._record(f"{old}->{phase}", "phase", f"Phase {old} -> {phase}: {why}", self.s.period)

    def close(self, code: str, status: str, reason: str, milestone: str | None = None) -> None:
        """Close the open tasks with ``code`` (only the one for ``milestone``, if given)."""
        keep: list[OpenTask] = []
        for task in self.s.open_tasks:
            if task.code == code and milestone in (None, task.milestone):
                self.changes.closures.append(
                    TaskClosure(code=task.code, milestone=task.milestone, status=status, reason=reason)  # type: ignore[arg-type]
                )
            else:
                keep.append(task)
        self.s.open_tasks = keep

    def skip_milestone(self, spec: MilestoneSpec, why: str) -> None:
        self.s.milestones[spec.name].status = "skipped"
        self.s.period = spec.name
        self._record(spec.name, "skipped", f"{spec.name} skipped: {why}", spec.name)

    # -- baseline (SPEC section 3) --

    def baseline(self, enrollment: Enrollment, enroll_day: int) -> None:
        t = self.d.thresholds
        if enrollment.osteoporosis_therapy is None:
            self.raise_("START_OSTEOPOROSIS_THERAPY")
            self.s.watchdog = "armed"
        if not enrollment.calcium_vitamin_d:
            self.raise_("CALCIUM_VITAMIN_D")
        if (
            enroll_day < t.calcitonin_window_days
            and enrollment.pain_nrs >= t.calcitonin_min_nrs
            and self.d.calcitonin not in enrollment.analgesics
        ):
            self.raise_("CALCITONIN_ACUTE_PAIN")
        low, high = t.mild_pain_nrs
        if low <= enrollment.pain_nrs <= high:
            self.raise_("ACETAMINOPHEN_MILD_PAIN")
        if self.d.opioid in enrollment.analgesics:
            self._opioid_caution("on an opioid at enrollment")
        self.raise_("AVOID_BED_REST")
        self.raise_("BRACING_INCONCLUSIVE")
        self.raise_("EXERCISE_INCONCLUSIVE")
        if enrollment.red_flags:
            self.raise_(
                "SURGICAL_CONSULTATION",
                extra=self._red_flag_text(enrollment.red_flags),
                subjects=list(dict.fromkeys(enrollment.red_flags)),
            )

    def _red_flag_text(self, flags: list[str]) -> str:
        return "Red flags: " + "; ".join(self.d.red_flags[f] for f in flags) + "."

    def _opioid_caution(self, why: str) -> None:
        if self.s.age >= self.d.thresholds.elderly_age:
            self.raise_("OPIOID_CAUTION_ELDERLY", extra=f"Age {self.s.age}, {why}.")

    # -- timed actions (SPEC section 4) --

    def run_due(self, point: _Due) -> None:
        if point.what == "milestone":
            self.run_milestone(self.d.milestone(point.ref))
        elif point.what == "reassessment_due":
            self.reassessment_overdue(self.d.milestone(point.ref))
        elif point.what == "watchdog":
            self.s.watchdog = "fired"
            self.raise_("PHARMACOTHERAPY_OVERDUE", milestone=ENROLLMENT_PERIOD)
        elif point.what == "dose_reminder":
            due = date.fromisoformat(point.ref)
            self.s.denosumab_reminded_for = due
            self.raise_("DENOSUMAB_DOSE_DUE", milestone=f"dose:{point.ref}", due_on=due, extra=f"Next dose due {due}.")

    def run_milestone(self, spec: MilestoneSpec) -> None:
        progress = self.s.milestones[spec.name]
        self.s.period = spec.name
        if progress.status == "skip_requested":
            # A clinician skipped it ahead of time: its actions do not run, but the episode
            # still moves on as the milestone's day says.
            progress.status = "skipped"
            self._enter_phase(spec)
            if spec.after_reassessment == "evaluation":
                self.evaluate(spec)
            if spec.twelve_month_review:
                self.finish_year()
            return
        if self.s.phase == "resolved" and spec.pain_reassessment:
            self.skip_milestone(spec, "pain resolved")
            return
        progress.status = "done"
        self._enter_phase(spec)
        if spec.pain_reassessment:
            self.close("PAIN_REASSESSMENT", "cancelled", f"superseded by the {spec.name} reassessment")
            self.raise_("PAIN_REASSESSMENT", milestone=spec.name)
            progress.reassessment = "open"
        if spec.stop_calcitonin and self.d.calcitonin in self.s.analgesics:
            self.raise_("STOP_CALCITONIN", milestone=spec.name)
        if spec.twelve_month_review:
            self.raise_("TWELVE_MONTH_REVIEW", milestone=spec.name)
            self.finish_year()

    def _enter_phase(self, spec: MilestoneSpec) -> None:
        if spec.enters_phase is not None and self.s.phase in _TRACK:
            self.set_phase(spec.enters_phase, f"day {spec.day} ({spec.name})")

    def finish_year(self) -> None:
        if self.s.on_denosumab:
            self.set_phase("maintenance", "12-month review done; denosumab continues")
        else:
            self.set_phase("completed", "12-month review done")

    def reassessment_overdue(self, spec: MilestoneSpec) -> None:
        self.s.milestones[spec.name].reassessment = "overdue"
        self.raise_("PAIN_REASSESSMENT_OVERDUE", milestone=spec.name)
        self.after_reassessment(spec)

    def after_reassessment(self, spec: MilestoneSpec) -> None:
        """What a milestone does once its reassessment is recorded, overdue or waived."""
        if spec.after_reassessment == "not_resolving":
            if self.s.latest_nrs >= self.d.thresholds.not_resolving_min_nrs:
                self.raise_("NOT_RESOLVING", milestone=spec.name, extra=f"Latest NRS {self.s.latest_nrs}.")
        elif spec.after_reassessment == "evaluation":
            self.evaluate(spec)

    # -- the 3-month evaluation (SPEC 4.4, 4.5) --

    def criteria(self) -> list[str]:
        s, d = self.s, self.d
        met: list[str] = []
        oral = [a for a in s.analgesics if a in d.analgesics and d.analgesics[a].oral]
        if s.latest_nrs >= d.thresholds.refractory_min_nrs and oral:
            met.append(f"pain refractory to oral analgesics (NRS {s.latest_nrs} on {', '.join(oral)})")
        elif s.oral_analgesia_adequate is False:
            met.append("oral analgesia recorded as inadequate")
        if set(d.pain_medication_contraindication) <= set(s.contraindications):
            met.append("contraindication to pain medication")
        if s.parenteral_narcotics:
            met.append("parenteral narcotics required")
        if s.hospital_admission:
            met.append("hospital admission for this fracture")
        return met

    def imaging_stale(self) -> bool:
        latest = self.s.latest_imaging_on
        return latest is None or (self.on - latest).days > self.d.thresholds.imaging_stale_days

    def evaluate(self, spec: MilestoneSpec) -> None:
        self.s.evaluated = True
        self.evaluated_now = True
        if self.s.latest_nrs >= self.d.thresholds.persisting_pain_min_nrs and self.imaging_stale():
            self.raise_(
                "OBTAIN_MRI",
                milestone=spec.name,
                extra=f"Pain persists (NRS {self.s.latest_nrs}) and the latest imaging is "
                + (f"from {self.s.latest_imaging_on}." if self.s.latest_imaging_on else "missing."),
            )
        if not self._augmentation_review(spec.name):
            self.set_phase("conservative_success", "augmentation criteria not met at evaluation")

    def _augmentation_review(self, milestone: str) -> bool:
        """Raise the review if any criterion holds; True if it is (or already was) raised."""
        if f"AUGMENTATION_REVIEW@{milestone}" in self.s.raised:
            return True
        met = self.criteria()
        if not met:
            return False
        self.raise_("AUGMENTATION_REVIEW", milestone=milestone, extra="Criteria met: " + "; ".join(met) + ".")
        if (
            set(self.s.levels) & set(self.d.nerve_root_block_levels)
            and self.s.acute_injury
            and self.s.correlating_symptoms
        ):
            self.raise_("NERVE_ROOT_BLOCK_OPTION", milestone=milestone)
        if self.s.phase in ("evaluation", "conservative_success"):
            self.set_phase("augmentation_review", "augmentation criteria met: " + "; ".join(met))
        return True

    # -- events (SPEC section 5) --

    def apply(self, event: Event) -> None:
        self.trigger = f"{event.type}-day{self.s.day_of(event.occurred_on)}"
        match event:
            case PainAssessment():
                self.pain_assessment(event)
            case MedicationStarted():
                self.medication_started(event.agent, event.occurred_on)
            case MedicationStopped():
                self.medication_stopped(event.agent)
            case DoseGiven():
                self.dose_given(event.agent, event.occurred_on)
            case Imaging():
                self.imaging(event)
            case HospitalAdmission():
                self.s.hospital_admission = True
            case ParenteralNarcotics():
                self.s.parenteral_narcotics = True
            case RedFlagRaised():
                self.raise_("SURGICAL_CONSULTATION", extra=self._red_flag_text([event.flag]), subjects=[event.flag])
            case ClinicianNote():
                pass  # recorded in the event log by the caller; nothing to raise
            case Override():
                self.override(event)
            case Withdraw():
                self.withdraw(event)
        # After the evaluation, every accepted event re-checks the criteria (SPEC 4.5).
        if self.s.evaluated and not self.evaluated_now and not self.s.finished:
            self._augmentation_review(_evaluation_milestone(self.d).name)

    def pain_assessment(self, event: PainAssessment) -> None:
        s, d = self.s, self.d
        before = set(s.analgesics)
        latest = event.occurred_on >= s.latest_pain_on
        if latest:  # a late-recorded older assessment does not overwrite a newer one
            s.analgesics = list(event.analgesics)
            s.latest_nrs = event.nrs
            s.latest_pain_on = event.occurred_on
            s.oral_analgesia_adequate = event.oral_analgesia_adequate
        on_opioid = d.opioid in event.analgesics
        if on_opioid and d.opioid not in before:
            self._opioid_caution("an opioid was started")
        caution = [e for e in event.opioid_effects if e in d.opioid_caution_effects]
        if on_opioid and caution:
            self._opioid_caution(f"opioid effects: {', '.join(caution)}")
        if event.mobility == "bed_rest":
            self.raise_("BED_REST_ALERT")
        if event.symptoms_changed:
            self.raise_("OBTAIN_MRI", extra="Symptoms have changed.")
        closed = self._close_reassessment(event.occurred_on)
        for spec in closed:
            self.after_reassessment(spec)
        if (
            latest
            and not self.evaluated_now
            and not s.evaluated
            and s.phase in _TRACK
            and event.nrs <= d.thresholds.resolved_max_nrs
            and not s.analgesics
        ):
            self.set_phase("resolved", f"NRS {event.nrs} with no analgesics in use")

    def _close_reassessment(self, occurred_on: date) -> list[MilestoneSpec]:
        """Close the open reassessment task(s) of milestones on or before ``occurred_on``.

        Returns the milestones whose reassessment this records (not those already overdue).
        """
        recorded: list[MilestoneSpec] = []
        for task in [t for t in self.s.open_tasks if t.code == "PAIN_REASSESSMENT"]:
            spec = self.d.milestone(task.milestone)
            if self.s.identified_on + timedelta(days=spec.day) > occurred_on:
                continue  # an assessment before a milestone does not close that milestone
            self.close("PAIN_REASSESSMENT", "completed", f"pain assessment recorded on {occurred_on}", spec.name)
            progress = self.s.milestones[spec.name]
            if progress.reassessment == "open":
                progress.reassessment = "recorded"
                recorded.append(spec)
        return recorded

    def medication_started(self, agent: str, on: date) -> None:
        if agent in self.d.osteoporosis_agents:
            self._osteoporosis_agent_recorded(agent)
            if agent == self.d.denosumab.agent:
                self._denosumab_dose(on)
            return
        if agent not in self.s.analgesics:
            self.s.analgesics.append(agent)
        if agent == self.d.opioid:
            self._opioid_caution("an opioid was started")
        if agent == self.d.calcitonin:
            self.close("CALCITONIN_ACUTE_PAIN", "completed", "calcitonin started")

    def _osteoporosis_agent_recorded(self, agent: str) -> None:
        if agent not in self.s.osteoporosis_agents:
            self.s.osteoporosis_agents.append(agent)
        self.close("START_OSTEOPOROSIS_THERAPY", "completed", f"{agent} recorded")
        if self.s.watchdog == "armed":
            self.s.watchdog = "satisfied"

    def _denosumab_dose(self, on: date) -> None:
        if self.s.denosumab_last_dose is None or on > self.s.denosumab_last_dose:
            self.s.denosumab_last_dose = on
        self.close("DENOSUMAB_DOSE_DUE", "completed", f"dose given on {on}")

    def medication_stopped(self, agent: str) -> None:
        if agent in self.d.osteoporosis_agents:
            if agent in self.s.osteoporosis_agents:
                self.s.osteoporosis_agents.remove(agent)
            if agent == self.d.denosumab.agent:
                self.close("DENOSUMAB_DOSE_DUE", "cancelled", "denosumab stopped")
                if self.s.phase == "maintenance":
                    self.set_phase("completed", "denosumab stopped")
            return
        if agent in self.s.analgesics:
            self.s.analgesics.remove(agent)
        if agent == self.d.calcitonin:
            self.close("STOP_CALCITONIN", "completed", "calcitonin stopped")

    def dose_given(self, agent: str, on: date) -> None:
        if agent in self.d.osteoporosis_agents:
            self._osteoporosis_agent_recorded(agent)
            if agent == self.d.denosumab.agent:
                self._denosumab_dose(on)

    def imaging(self, event: Imaging) -> None:
        if self.s.latest_imaging_on is None or event.occurred_on > self.s.latest_imaging_on:
            self.s.latest_imaging_on = event.occurred_on
        if event.new_fracture:
            self.raise_("NEW_FRACTURE", extra=f"{event.modality.upper()} on {event.occurred_on} shows a new fracture.")
        if event.modality == "mri":
            self.close("OBTAIN_MRI", "completed", f"MRI performed on {event.occurred_on}")

    def override(self, event: Override) -> None:
        why = f"override by {event.author}: {event.reason}"
        if event.skip_milestone is not None:
            spec = self.d.milestone(event.skip_milestone)
            self.s.milestones[spec.name].status = "skip_requested"
            self._record(spec.name, "skipped", f"{spec.name} skipped: {why}", spec.name)
            return
        assert event.close_task is not None
        self.close_by_person(event.close_task, None, "cancelled", why)

    def close_by_person(self, code: str, milestone: str | None, status: str, why: str) -> None:
        """A person closes a task (done, cancelled, or overridden): what waited on it moves on."""
        waived = [t.milestone for t in self.s.open_tasks if t.code == code and milestone in (None, t.milestone)]
        self.close(code, status, why, milestone)
        if code == "START_OSTEOPOROSIS_THERAPY" and self.s.watchdog == "armed":
            self.s.watchdog = "satisfied"
        if code == "PAIN_REASSESSMENT":
            for name in waived:
                progress = self.s.milestones[name]
                if progress.reassessment == "open":
                    progress.reassessment = "waived"
                    self.after_reassessment(self.d.milestone(name))

    def withdraw(self, event: Withdraw) -> None:
        for task in list(self.s.open_tasks):
            self.close(task.code, "cancelled", f"episode withdrawn ({event.reason})", task.milestone)
        self.set_phase("withdrawn", f"withdrawn: {event.reason}")


__all__ = [
    "FINAL_PHASES",
    "RULES_REVISION",
    "action_time",
    "advance",
    "apply_event",
    "close_task",
    "enroll",
    "implied_phase",
    "local_date",
    "migrate",
    "next_due",
    "upgrade",
    "validate_enrollment",
    "validate_event",
]
