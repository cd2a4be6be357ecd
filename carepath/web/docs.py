"""``/docs``: the API reference rendered on the server from the app's OpenAPI document.

Swagger UI needs its script and stylesheet from a CDN: the pages' CSP forbids that, and this
machine has no network and no package shipping the assets. This page needs neither: it lists
every operation with its parameters, body schema and answers, and links ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from carepath.web.pages import render

router = APIRouter(include_in_schema=False)


def _body_schema(op: dict[str, Any]) -> dict[str, Any]:
    return (((op.get("requestBody") or {}).get("content") or {}).get("application/json") or {}).get("schema") or {}


def _schema_name(content: dict[str, Any] | None) -> str:
    schema = ((content or {}).get("application/json") or {}).get("schema") or {}
    ref = schema.get("$ref") or (schema.get("items") or {}).get("$ref") or ""
    name = ref.rsplit("/", 1)[-1]
    if schema.get("oneOf"):
        return "one of " + ", ".join(o.get("$ref", "").rsplit("/", 1)[-1] for o in schema["oneOf"])
    return f"list of {name}" if name and schema.get("type") == "array" else name or schema.get("type", "")


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ref = schema.get("$ref", "")
    if not ref:
        return "", schema
    name = ref.rsplit("/", 1)[-1]
    return name, spec.get("components", {}).get("schemas", {}).get(name, {})


def _type_words(spec: dict[str, Any], prop: dict[str, Any]) -> str:
    """A property's type as a reader wants it: "integer 0 to 10", "one of xray, ct, mri", "Patient"."""
    options = [o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"]
    words = []
    for option in options:
        name, _ = _resolve(spec, option)
        if name:
            words.append(name)
        elif "const" in option:
            words.append(f'"{option["const"]}"')
        elif "enum" in option:
            words.append("one of " + ", ".join(map(str, option["enum"])))
        elif option.get("type") == "array":
            words.append("list of " + _type_words(spec, option.get("items", {})))
        else:
            kind = option.get("format") or option.get("type", "any")
            if "minimum" in option and "maximum" in option:
                kind += f" {option['minimum']} to {option['maximum']}"
            words.append(kind)
    return " or ".join(words) + (" or null" if len(options) < len(prop.get("anyOf", [prop])) else "")


def body_parts(spec: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """A request body as the page lists it: each variant (an event type, an enrollment) with its
    fields, nested models' fields under their dotted names."""
    variants = schema.get("oneOf") or [schema]
    parts = []
    for variant in variants:
        name, model = _resolve(spec, variant)
        if model.get("properties"):
            tag = model["properties"].get("type", {}).get("const")
            parts.append({"name": f'{name} (type "{tag}")' if tag else name, "fields": _fields(spec, model, "")})
    return parts


def _fields(spec: dict[str, Any], model: dict[str, Any], prefix: str, depth: int = 0) -> list[tuple[str, str, bool]]:
    found = []
    required = set(model.get("required", []))
    for key, prop in model.get("properties", {}).items():
        found.append((prefix + key, _type_words(spec, prop), key in required))
        inner = prop.get("items", prop) if prop.get("type") == "array" else prop
        sub_name, sub = _resolve(spec, next((o for o in inner.get("anyOf", [inner]) if "$ref" in o), inner))
        if sub_name and depth < 2:
            sep = "[]." if prop.get("type") == "array" else "."
            found += _fields(spec, sub, f"{prefix}{key}{sep}", depth + 1)
    return found


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for path, methods in spec.get("paths", {}).items():
        for method, op in methods.items():
            found.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "tag": (op.get("tags") or ["other"])[0],
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "parameters": [
                        (p["in"], p["name"], p.get("required", False), p.get("description", ""))
                        for p in op.get("parameters", [])
                    ],
                    "body": _schema_name((op.get("requestBody") or {}).get("content")),
                    "body_parts": body_parts(spec, _body_schema(op)),
                    "answers": [
                        (code, _schema_name(r.get("content")), r.get("description", ""))
                        for code, r in op.get("responses", {}).items()
                    ],
                }
            )
    return sorted(found, key=lambda o: (o["tag"], o["path"], o["method"]))


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    spec = request.app.openapi()
    return render(
        "docs.html", who=None, title=spec["info"]["title"], version=spec["info"]["version"], ops=operations(spec)
    )
