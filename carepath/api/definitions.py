"""Shipped pathway definitions (data, no database): every registered pathway's versions."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from carepath.api.deps import Anyone, RowId
from carepath.engine.registry import pathway_for, pathways
from carepath.service import NotFound

router = APIRouter(prefix="/definitions", tags=["definitions"])


@router.get("")
def definitions(_: Anyone) -> list[dict[str, Any]]:
    """The pathway definitions this server ships."""
    return [
        {"id": pathway.id, "version": v, "title": pathway.definition(v).title}
        for pathway in pathways()
        for v in pathway.versions()
    ]


@router.get("/{pathway_id}/{version}")
def definition(pathway_id: str, version: RowId, _: Anyone) -> dict[str, Any]:
    """One definition with every parameter."""
    try:
        pathway = pathway_for(pathway_id)
    except LookupError as exc:
        raise NotFound(str(exc), field="pathway_id") from None
    try:
        return pathway.definition(version).model_dump(mode="json")
    except LookupError as exc:
        raise NotFound(str(exc), field="version") from None
