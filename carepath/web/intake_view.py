"""What the worklist shows of the intake (its "Found in reports" section), and the matched words
of a candidate's sentence marked for the page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from carepath.access import CLINICIANS, Principal
from db.intake import REFUSED, candidates, count_messages

SHOWN = 20  # candidates on the worklist; GET /candidates lists them all


def highlighted(sentence: str, spans: list[list[int]]) -> list[tuple[str, bool]]:
    """``sentence`` cut into (text, marked) pieces at the matched words, for <mark> in the page."""
    pieces, at = [], 0
    for start, end in sorted((max(a, 0), min(b, len(sentence))) for a, b in spans):
        if start < at:
            start = at
        if start >= end:
            continue
        pieces += [(sentence[at:start], False), (sentence[start:end], True)]
        at = end
    pieces.append((sentence[at:], False))
    return [(text, marked) for text, marked in pieces if text]


def section(engine: Engine, who: Principal) -> dict[str, Any]:
    """What the worklist shows of the intake: open candidates, and how many messages were refused."""
    shown = candidates(engine, "open", SHOWN)
    return {
        "items": [(c, highlighted(c.sentence, c.spans)) for c in shown],
        "more": len(shown) >= SHOWN,
        "refused": count_messages(engine, REFUSED) if who.role in CLINICIANS else 0,
    }
