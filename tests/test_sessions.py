"""Sign-in sessions apart from API tokens: the cookie carries a session id of its own, which ends on
the server at logout, after its idle and absolute expiry, and when its token is revoked."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from carepath.access import COOKIE
from db.models import SessionRow
from db.tokens import create_token, digest, revoke
from tests.support.live import api_client, sqlite_url, start_dev_server

BASE = "http://carepath.test"
FORM = {"content-type": "application/x-www-form-urlencoded", "origin": BASE}


@pytest.fixture(scope="module")
async def live(tmp_path_factory):
    env = await start_dev_server()
    async with api_client(env, sqlite_url(tmp_path_factory.mktemp("sessions"))) as api:
        yield api
    await env.shutdown()


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _browser(live) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=live.app), base_url=BASE)


async def _signed_in(live, token: str) -> tuple[httpx.AsyncClient, str]:
    browser = _browser(live)
    signed = await browser.post(
        "/login", content=f"token={token}&csrf_token={_csrf((await browser.get('/login')).text)}", headers=FORM
    )
    assert signed.status_code == 303, signed.text
    return browser, browser.cookies[COOKIE]


async def _page_with(live, cookie: str) -> int:
    """The worklist's status for a browser holding only a copy of the cookie (303: sent to sign in)."""
    async with _browser(live) as thief:
        return (await thief.get("/", headers={"cookie": f"{COOKIE}={cookie}"})).status_code


def _clinician(live, name: str) -> tuple[int, str]:
    return create_token(live.service.engine, name, "physician", "test")


async def _cookie(live, name: str) -> str:
    """A fresh clinician's sign-in cookie (the browser that got it is gone)."""
    browser, cookie = await _signed_in(live, _clinician(live, name)[1])
    await browser.aclose()
    return cookie


async def test_the_cookie_is_a_session_not_the_token_and_logout_ends_it_on_the_server(live):
    token_id, token = _clinician(live, "sess-logout")
    browser, cookie = await _signed_in(live, token)
    assert cookie != token and token not in cookie
    with Session(live.service.engine) as db:
        row = db.get(SessionRow, digest(cookie))
        assert row is not None and row.token_id == token_id and db.get(SessionRow, cookie) is None
    assert await _page_with(live, cookie) == 200
    # The JSON API stays bearer-only: the cookie is not accepted there.
    api = await live.client.get("/tasks", headers={"Authorization": "", "cookie": f"{COOKIE}={cookie}"})
    assert api.status_code == 401
    out = await browser.post("/logout", content=f"csrf_token={_csrf((await browser.get('/')).text)}", headers=FORM)
    assert out.status_code == 303
    await browser.aclose()
    assert await _page_with(live, cookie) == 303  # a copy kept from before the logout no longer works
    assert (await live.client.get("/tasks", headers={"Authorization": f"Bearer {token}"})).status_code == 200


async def test_a_session_ends_after_its_idle_time(live):
    cookie = await _cookie(live, "sess-idle")
    real = live.service.clock
    try:
        live.service.clock = lambda: real() + timedelta(minutes=29)
        assert await _page_with(live, cookie) == 200
        live.service.clock = lambda: real() + timedelta(minutes=29 + 31)
        assert await _page_with(live, cookie) == 303
        live.service.clock = real
        assert await _page_with(live, cookie) == 303  # ended for good, not revived by an earlier clock
    finally:
        live.service.clock = real


async def test_a_session_ends_after_its_absolute_time_however_busy(live):
    cookie = await _cookie(live, "sess-absolute")
    real = live.service.clock
    try:
        for step in range(1, 29):  # a request every 25 minutes: never idle, for 11 h 40
            live.service.clock = lambda step=step: real() + timedelta(minutes=25 * step)
            assert await _page_with(live, cookie) == 200, step
        live.service.clock = lambda: real() + timedelta(minutes=25 * 29)  # 12 h 05: 25 minutes after the last
        assert await _page_with(live, cookie) == 303
    finally:
        live.service.clock = real


async def test_revoking_the_token_ends_its_sessions(live):
    token_id, token = _clinician(live, "sess-revoked")
    first, cookie = await _signed_in(live, token)
    second, other = await _signed_in(live, token)
    assert cookie != other
    await first.aclose()
    await second.aclose()
    assert await _page_with(live, cookie) == 200 and await _page_with(live, other) == 200
    assert revoke(live.service.engine, token_id)
    assert await _page_with(live, cookie) == 303 and await _page_with(live, other) == 303
    with Session(live.service.engine) as db:
        ended = db.scalars(select(SessionRow.ended_at).where(SessionRow.token_id == token_id)).all()
    assert len(ended) == 2 and all(ended)
