"""The security headers on every answer: refusals (404, 405, 413, 422, 500) as well as pages and JSON."""

from __future__ import annotations

import httpx
import pytest

from carepath.app import create_app
from carepath.settings import Settings

EXPECTED = {
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}


@pytest.fixture
async def client():
    # No service: what needs none answers; what does fails with a 500 (the unexpected-error path).
    app = create_app(settings=Settings(max_request_bytes=1_000))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://carepath.test") as http:
        yield http


async def _chunks():
    for _ in range(2):
        yield b"x" * 600


async def test_every_answer_carries_the_security_headers(client):
    answers = {
        "health": await client.get("/health"),
        "404": await client.get("/no-such-page"),
        "405": await client.delete("/health"),
        "413 declared": await client.post(
            "/episodes", content=b"x" * 2_000, headers={"content-type": "application/json"}
        ),
        "413 chunked": await client.post("/episodes", content=_chunks()),
        "500": await client.get("/episodes", headers={"Authorization": "Bearer cpt_x"}),
        "login page": await client.get("/login"),
    }
    assert [a.status_code for a in answers.values()] == [200, 404, 405, 413, 413, 500, 200]
    for what, answer in answers.items():
        for name, value in EXPECTED.items():
            assert answer.headers.get(name) == value, (what, name, dict(answer.headers))
        assert "frame-ancestors 'none'" in answer.headers.get("content-security-policy", ""), what
        assert answer.headers.get("referrer-policy") in ("no-referrer", "same-origin"), what
