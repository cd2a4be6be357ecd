"""Readable timelines for people at a terminal (``carepath simulate`` without ``--json``)."""

from __future__ import annotations

from typing import Any


def render_text(results: list[dict[str, Any]]) -> str:
    lines: list[str] = []
    for result in results:
        lines.append(f"== {result['scenario'] or '(unnamed scenario)'}")
        lines.append(f"   pathway {result['pathway']}, day 0 = {result['identified_on']}")
        lines.append(f"   {'day':>4}  {'kind':<10} {'priority':<8} {'assignee':<11} {'code':<28} title")
        for item in result["timeline"]:
            evidence = "".join(f"[{e}]" for e in item["evidence"])
            assignee = item["assignee"] or "-"
            lines.append(
                f"   {item['day']:>4}  {item['kind']:<10} {item['priority']:<8} {assignee:<11} "
                f"{item['code']:<28} {item['title']} {evidence}".rstrip()
            )
        for rejected in result["rejected"]:
            lines.append(f"   rejected day {rejected['day']} {rejected['type']}: {rejected['error']}")
        lines.append(f"   final phase: {result['final_phase']}")
        lines.append("")
    return "\n".join(lines)
