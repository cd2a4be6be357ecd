"""Pathways by definition id. The engine ships none: the shipped ones are registered at boot by
``carepath.pathways.register_shipped`` (the worker, the API, the command line); a test or a
deployment may register another (``register``) before its worker starts.

Register at boot, never lazily: a pathway first imported inside the workflow sandbox would get
the sandbox's datetime and zoneinfo.
"""

from __future__ import annotations

from typing import Any

from carepath.engine.pathway import Pathway

_PATHWAYS: dict[str, Pathway] = {}
_DEFAULT: list[str] = []  # the first registered pathway: what an enrollment gets unless it names one


def register(pathway: Pathway, default: bool = False) -> Pathway:
    """Make ``pathway`` known by its id; ``default``: enrollments that name no pathway get it."""
    if not isinstance(pathway, Pathway):
        raise TypeError(f"{pathway!r} does not implement the Pathway protocol")
    _PATHWAYS[pathway.id] = pathway
    if default or not _DEFAULT:
        _DEFAULT[:] = [pathway.id]
    return pathway


def pathway_for(pathway_id: str) -> Pathway:
    """The pathway whose definitions have id ``pathway_id``; LookupError if none is registered."""
    try:
        return _PATHWAYS[pathway_id]
    except KeyError:
        raise LookupError(f"no pathway {pathway_id!r}; known: {', '.join(sorted(_PATHWAYS))}") from None


def default_pathway() -> Pathway:
    """The pathway an enrollment gets when it names none (LookupError before any is registered)."""
    if not _DEFAULT:
        raise LookupError("no pathway is registered (carepath.pathways.register_shipped registers the shipped ones)")
    return _PATHWAYS[_DEFAULT[0]]


def pathways() -> list[Pathway]:
    return [_PATHWAYS[key] for key in sorted(_PATHWAYS)]


def pathway_of(data: Any) -> Pathway:
    """The pathway of a definition or a carried state, as model or as decoded JSON."""
    definition = data.get("definition", data) if isinstance(data, dict) else getattr(data, "definition", data)
    pathway_id = definition["id"] if isinstance(definition, dict) else definition.id
    return pathway_for(pathway_id)
