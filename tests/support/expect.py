"""Judge a simulated timeline against a scenario's ``expect`` block (the format check.py reads)."""

from __future__ import annotations

from typing import Any


def judge(expect: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """Every way ``result`` misses ``expect``; empty when it holds."""
    timeline = result.get("timeline", [])

    def days(code: str, lo: int = -(10**6), hi: int = 10**6) -> list[int]:
        return [i["day"] for i in timeline if i["code"] == code and lo <= i["day"] <= hi]

    problems = []
    for code, lo, hi in expect.get("present", []):
        if not days(code, lo, hi):
            problems.append(f"missing {code} on day {lo}-{hi} (seen on days {days(code)})")
    for code in expect.get("absent", []):
        if days(code):
            problems.append(f"unexpected {code} on days {days(code)}")
    for code, lo, hi in expect.get("absent_window", []):
        if days(code, lo, hi):
            problems.append(f"unexpected {code} on days {days(code, lo, hi)} (window {lo}-{hi})")
    for code, count in expect.get("count", {}).items():
        if len(days(code)) != count:
            problems.append(f"{code} raised {len(days(code))} times, expected {count}")
    if "final_phase" in expect and result.get("final_phase") != expect["final_phase"]:
        problems.append(f"final_phase {result.get('final_phase')!r}, expected {expect['final_phase']!r}")
    if "rejected" in expect and len(result.get("rejected", [])) != expect["rejected"]:
        problems.append(f"{len(result.get('rejected', []))} events rejected, expected {expect['rejected']}")
    return problems
