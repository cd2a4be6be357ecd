"""Shipped pathway definitions (data, no database)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from carepath.api.deps import Anyone, RowId
from carepath.pathway.definition import DEFAULT_PATHWAY, available_versions, load_definition
from carepath.service import NotFound

router = APIRouter(prefix="/definitions", tags=["definitions"])


@router.get("")
def definitions(_: Anyone) -> list[dict[str, Any]]:
    """The pathway definitions this server ships."""
    return [
        {"id": DEFAULT_PATHWAY, "version": v, "title": load_definition(DEFAULT_PATHWAY, v).title}
        for v in available_versions(DEFAULT_PATHWAY)
    ]


@router.get("/{pathway_id}/{version}")
def definition(pathway_id: str, version: RowId, _: Anyone) -> dict[str, Any]:
    """One definition with every parameter."""
    try:
        return load_definition(pathway_id, version).model_dump(mode="json")
    except LookupError as exc:
        raise NotFound(str(exc), field="version" if available_versions(pathway_id) else "pathway_id") from None
