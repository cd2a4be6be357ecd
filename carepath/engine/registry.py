"""Pathways by definition id. The shipped ones register here; a test or deployment may register
another (``register``) before its worker starts."""

from __future__ import annotations

from typing import Any

from carepath.engine.pathway import Pathway

# The shipped pathways, imported with the registry (never lazily: a first import inside the
# workflow sandbox would give the pathway sandboxed datetime and zoneinfo).
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR

DEFAULT_PATHWAY = OVCF_LUMBAR.id

_PATHWAYS: dict[str, Pathway] = {OVCF_LUMBAR.id: OVCF_LUMBAR}


def register(pathway: Pathway) -> Pathway:
    if not isinstance(pathway, Pathway):
        raise TypeError(f"{pathway!r} does not implement the Pathway protocol")
    _PATHWAYS[pathway.id] = pathway
    return pathway


def pathway_for(pathway_id: str) -> Pathway:
    """The pathway whose definitions have id ``pathway_id``; LookupError if none is registered."""
    try:
        return _PATHWAYS[pathway_id]
    except KeyError:
        raise LookupError(f"no pathway {pathway_id!r}; known: {', '.join(sorted(_PATHWAYS))}") from None


def pathways() -> list[Pathway]:
    return [_PATHWAYS[key] for key in sorted(_PATHWAYS)]


def pathway_of(data: Any) -> Pathway:
    """The pathway of a definition or a carried state, as model or as decoded JSON."""
    definition = data.get("definition", data) if isinstance(data, dict) else getattr(data, "definition", data)
    pathway_id = definition["id"] if isinstance(definition, dict) else definition.id
    return pathway_for(pathway_id)
