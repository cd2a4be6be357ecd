"""Definitions and states as they cross Temporal's wire: JSON out, and back in as the model of
the pathway they belong to (found in the registry by the definition's id), so a workflow input
or a query result decodes to ovcf-lumbar's state, or another pathway's, without the engine
naming either."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer, PlainValidator

from carepath.engine.definition import DefinitionCore
from carepath.engine.registry import pathway_of
from carepath.engine.state import EpisodeCore


def _definition(value: Any) -> DefinitionCore:
    return pathway_of(value).decode_definition(value)


def _state(value: Any) -> EpisodeCore:
    return pathway_of(value).decode_state(value)


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


# Interned on the way in (one shared instance per distinct definition: Temporal keeps each cached
# workflow's decoded input for its life, and a private copy is ~40 KiB per sleeping episode).
WireDefinition = Annotated[DefinitionCore, PlainValidator(_definition), PlainSerializer(_json)]
WireState = Annotated[EpisodeCore, PlainValidator(_state), PlainSerializer(_json)]
