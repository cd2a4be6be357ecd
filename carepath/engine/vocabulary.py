"""Closed vocabularies every pathway shares: what an item is, who acts on it, how urgent it is."""

from typing import Literal

Kind = Literal["task", "flag", "escalation", "info", "phase", "skipped"]
Priority = Literal["routine", "high", "urgent"]
Assignee = Literal["physician", "coordinator", "patient"]
TaskStatus = Literal["open", "completed", "cancelled"]
Sex = Literal["female", "male", "other", "unknown"]

# Every pathway ends an episode in one of these phases (the store's episode status follows).
FINAL_PHASES: frozenset[str] = frozenset({"completed", "withdrawn"})

# Kinds that a person has to act on; they are tracked as tasks with a status.
ACTIONABLE_KINDS: frozenset[str] = frozenset({"task", "flag", "escalation"})
