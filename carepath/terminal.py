"""Subcommands for people at a terminal: they talk to the carepath HTTP API and print tables."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

DEFAULT_API = "http://127.0.0.1:8000"
# `carepath dev` writes its address here while it runs (under its --home), so commands run from
# the same folder find it on whatever port it took.
RUNNING_DEV = Path(".carepath") / "api-url"


class CommandError(Exception):
    """Printed as one line, exit status ``code``; never a traceback."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def api_url(given: str | None) -> str:
    """--api, else CAREPATH_API_URL, else the running `carepath dev` of this folder, else the default."""
    found = given or os.environ.get("CAREPATH_API_URL") or _running_dev() or DEFAULT_API
    return found.rstrip("/")


def _running_dev() -> str | None:
    try:
        return RUNNING_DEV.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def call(base: str, method: str, path: str, **kwargs: Any) -> Any:
    headers = kwargs.pop("headers", {})
    token = os.environ.get("CAREPATH_TOKEN")
    if not token:
        raise CommandError("set CAREPATH_TOKEN to your API token (`carepath dev` prints an admin token)", code=2)
    headers["Authorization"] = f"Bearer {token}"
    try:
        response = httpx.request(method, f"{base}{path}", headers=headers, timeout=60, **kwargs)
    except httpx.HTTPError as exc:
        raise CommandError(
            f"cannot reach the carepath API at {base} ({type(exc).__name__}). Start it with `make demo` (or "
            "`carepath dev`) in this folder, or point this command at a running one: "
            "export CAREPATH_API_URL=http://host:port (or --api)"
        ) from None
    if response.status_code >= 400:
        try:
            details = response.json().get("detail", [])
            lines = [f"{d['field']}: {d['message']}" if d.get("field") else d["message"] for d in details]
        except (ValueError, KeyError, TypeError, AttributeError):
            lines = [response.text.strip() or response.reason_phrase]
        raise CommandError(f"{response.status_code} " + "; ".join(lines), code=2 if response.status_code < 500 else 1)
    return response.json()


def read_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")) if path != "-" else json.load(sys.stdin)
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file", code=2) from None
    except json.JSONDecodeError as exc:
        raise CommandError(f"{path}: not valid JSON ({exc})", code=2) from None


def table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """A plain aligned table; ``columns`` are (key, heading)."""
    cells = [[str(row.get(key) if row.get(key) is not None else "-") for key, _ in columns] for row in rows]
    widths = [max([len(heading)] + [len(r[i]) for r in cells]) for i, (_, heading) in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


TASK_COLUMNS = [
    ("id", "task"),
    ("priority", "priority"),
    ("due_on", "due"),
    ("overdue_days", "overdue"),
    ("patient_ref", "patient"),
    ("assignee", "assignee"),
    ("code", "code"),
    ("title", "title"),
]


def enroll(base: str, file: str) -> str:
    result = call(base, "POST", "/episodes", json=read_json(file))
    return f"enrolled episode {result['episode_id']} ({result['pathway']}, phase {result['phase']})"


def event(base: str, episode: str, file: str, key: str | None) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    result = call(base, "POST", f"/episodes/{episode}/events", json=read_json(file), headers=headers)
    raised = ", ".join(result["raised"]) or "nothing new"
    return f"recorded {result['event_id']}: phase {result['phase']}; raised {raised}"


def worklist(base: str, assignee: str | None, status: str | None, priority: str | None) -> str:
    params = {k: v for k, v in {"assignee": assignee, "status": status, "priority": priority}.items() if v}
    rows = call(base, "GET", "/tasks", params=params)
    return table(rows, TASK_COLUMNS) if rows else "no tasks"


def show(base: str, episode: str) -> str:
    detail = call(base, "GET", f"/episodes/{episode}")
    head = (
        f"episode {detail['episode_id']}  patient {detail['patient_ref']}  {detail['pathway']}\n"
        f"phase {detail['phase']} ({detail['status']}), day 0 {detail['identified_on']}, "
        f"enrolled {detail['enrolled_on']}\n"
    )
    timeline = table(
        detail["timeline"],
        [
            ("day", "day"),
            ("kind", "kind"),
            ("priority", "priority"),
            ("code", "code"),
            ("status", "status"),
            ("title", "title"),
        ],
    )
    return f"{head}\n{timeline}"


def close(base: str, task: int, status: str, reason: str | None) -> str:
    verb = "complete" if status == "completed" else "cancel"
    body = {"reason": reason} if reason else ({} if verb == "cancel" else None)
    result = call(base, "POST", f"/tasks/{task}/{verb}", json=body)
    return f"task {result['id']} {result['code']} is {result['status']}"


def withdraw(base: str, episode: str, reason: str) -> str:
    result = call(base, "POST", f"/episodes/{episode}/withdraw", json={"reason": reason})
    return f"episode {episode} is {result['phase']}"


def create_api_token(base: str, name: str, role: str) -> str:
    result = call(base, "POST", "/tokens", json={"name": name, "role": role})
    return f"token {result['id']} for {result['name']} ({result['role']}), shown once:\n{result['token']}"
