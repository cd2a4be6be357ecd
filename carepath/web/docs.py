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


def _schema_name(content: dict[str, Any] | None) -> str:
    schema = ((content or {}).get("application/json") or {}).get("schema") or {}
    ref = schema.get("$ref") or (schema.get("items") or {}).get("$ref") or ""
    name = ref.rsplit("/", 1)[-1]
    return f"list of {name}" if name and schema.get("type") == "array" else name or schema.get("type", "")


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
                    "answers": [(code, _schema_name(r.get("content"))) for code, r in op.get("responses", {}).items()],
                }
            )
    return sorted(found, key=lambda o: (o["tag"], o["path"], o["method"]))


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    spec = request.app.openapi()
    return render(
        "docs.html", who=None, title=spec["info"]["title"], version=spec["info"]["version"], ops=operations(spec)
    )
