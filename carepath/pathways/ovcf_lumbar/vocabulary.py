"""Closed vocabularies of ovcf-lumbar's inputs and phases (engine-wide ones: carepath/engine/vocabulary.py).

Lists that a pathway version may change (agents, red flags) live in the definition instead.
"""

from typing import Literal

Level = Literal["L1", "L2", "L3", "L4", "L5"]
Contraindication = Literal["nsaid", "opioid"]
Mobility = Literal["ambulatory", "limited", "bed_rest"]
OpioidEffect = Literal["sedation", "nausea", "fall"]
Modality = Literal["xray", "ct", "mri"]
WithdrawReason = Literal["recovered", "transferred", "declined", "deceased", "other"]

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
