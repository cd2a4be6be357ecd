"""The OpenAPI document with every request body and error answer spelled out.

Enrollments and events are parsed by their pathway (the routes take plain JSON objects), so
FastAPI alone would document them as "object". Here each registered pathway's enrollment model
and event models go into ``components.schemas``: an event body is a discriminated union by
``type``, an enrollment one of the pathways' enrollments; and every operation lists the error
answers it can give (``{"detail": [{"field", "message"}]}``), which ``/docs`` shows.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from carepath.engine.registry import pathways

REF = "#/components/schemas/{model}"
ERROR = {"$ref": "#/components/schemas/ErrorAnswer"}
ERROR_SCHEMAS = {
    "FieldProblem": {
        "type": "object",
        "properties": {
            "field": {"type": "string", "description": "the input's key path, e.g. patient.age or events[3].nrs"},
            "message": {"type": "string", "description": "what is wrong, in words"},
        },
        "required": ["field", "message"],
    },
    "ErrorAnswer": {
        "type": "object",
        "properties": {"detail": {"type": "array", "items": {"$ref": "#/components/schemas/FieldProblem"}}},
        "required": ["detail"],
    },
}
ANSWERS = {
    "401": "no bearer token, or an unknown or revoked one (WWW-Authenticate: Bearer)",
    "403": "the token's role may not do this",
    "404": "no such episode, task or token",
    "409": "clashes with what is recorded (an active episode, a closed task, a key still in use; Retry-After when "
    "retrying later can succeed)",
    "422": "bad input: each problem names its field, and nothing was changed",
    "503": "the write was not recorded within the wait bound, or the database or Temporal is unavailable "
    "(Retry-After); retry with the same Idempotency-Key",
}
WRITES = ("post", "put", "patch", "delete")


def install(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _document(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document(spec: dict[str, Any]) -> None:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(ERROR_SCHEMAS)
    enrollments = [_component(schemas, p.enrollment_model) for p in pathways() if hasattr(p, "enrollment_model")]
    events: dict[str, str] = {}
    for pathway in pathways():
        for model in pathway.event_models():
            kind = model.model_fields["type"].default
            events.setdefault(kind, _component(schemas, model))
    bodies = {
        ("/episodes", "post"): _one_of(enrollments),
        ("/episodes/{episode_id}/events", "post"): {
            "oneOf": [{"$ref": ref} for ref in events.values()],
            "discriminator": {"propertyName": "type", "mapping": events},
        },
    }
    for (path, method), schema in bodies.items():
        operation = spec.get("paths", {}).get(path, {}).get(method)
        if operation is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    for path, methods in spec.get("paths", {}).items():
        for method, operation in methods.items():
            _errors(operation, method, path)


def _component(schemas: dict[str, Any], model: type[BaseModel]) -> str:
    """``model`` (and the models it nests) as components; the reference to it."""
    schema = model.model_json_schema(ref_template=REF)
    nested = schema.pop("$defs", {})
    schemas.update(nested)
    schemas[model.__name__] = schema
    for sub in _models(model):
        _ranges(sub, schemas.get(sub.__name__, {}))
    if "type" in model.model_fields and "type" in schema.get("properties", {}):
        schema["required"] = ["type", *[r for r in schema.get("required", []) if r != "type"]]  # the union's tag
    return REF.format(model=model.__name__)


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    """``model`` and every model its fields nest (directly, in a list, or optional)."""
    found = [model]
    for info in model.model_fields.values():
        for arg in _args(info.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in found:
                found += [m for m in _models(arg) if m not in found]
    return found


def _args(annotation: Any) -> list[Any]:
    inner = list(getattr(annotation, "__args__", ()) or ())
    return [annotation, *[a for arg in inner for a in _args(arg)]]


def _ranges(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Ranges the inputs check after validation (``engine.inputs.between``) as minimum/maximum."""
    for name, info in model.model_fields.items():
        for meta in info.metadata:
            bounds = getattr(getattr(meta, "func", None), "bounds", None)
            prop = schema.get("properties", {}).get(name)
            if bounds is not None and prop is not None:
                prop["minimum"], prop["maximum"] = bounds


def _one_of(refs: list[str]) -> dict[str, Any]:
    return {"$ref": refs[0]} if len(refs) == 1 else {"oneOf": [{"$ref": ref} for ref in refs]}


def _errors(operation: dict[str, Any], method: str, path: str) -> None:
    """The error answers an operation can give, each with the one error body."""
    codes = ["401", "403", "422"]
    if "{" in path:
        codes.append("404")
    if method in WRITES:
        codes += ["409", "503"]
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)  # FastAPI's own HTTPValidationError: we answer ErrorAnswer
    for code in codes:
        responses.setdefault(code, {"description": ANSWERS[code], "content": {"application/json": {"schema": ERROR}}})
