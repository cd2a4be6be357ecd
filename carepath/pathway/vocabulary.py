"""Closed vocabularies shared by inputs, outputs and the rules.

Lists that a pathway version may change (agents, red flags) live in the definition instead.
"""

from typing import Literal

Level = Literal["L1", "L2", "L3", "L4", "L5"]
Sex = Literal["female", "male", "other", "unknown"]
Contraindication = Literal["nsaid", "opioid"]
Mobility = Literal["ambulatory", "limited", "bed_rest"]
OpioidEffect = Literal["sedation", "nausea", "fall"]
Modality = Literal["xray", "ct", "mri"]
WithdrawReason = Literal["recovered", "transferred", "declined", "deceased", "other"]

Kind = Literal["task", "flag", "escalation", "info", "phase", "skipped"]
Priority = Literal["routine", "high", "urgent"]
Assignee = Literal["physician", "coordinator", "patient"]
TaskStatus = Literal["open", "completed", "cancelled"]

Phase = Literal[
    "acute",
    "conservative",
    "evaluation",
    "augmentation_review",
    "conservative_success",
    "resolved",
    "maintenance",
    "completed",
    "withdrawn",
]
FINAL_PHASES: frozenset[str] = frozenset({"completed", "withdrawn"})

# Kinds that a person has to act on; they are tracked as tasks with a status.
ACTIONABLE_KINDS: frozenset[str] = frozenset({"task", "flag", "escalation"})
