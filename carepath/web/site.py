"""The pages as one unit for the composition root: the workspace, ``/docs``, the patients'
check-in page, the intake's candidates, and the CSRF protection their forms share."""

from __future__ import annotations

from fastapi import FastAPI

from carepath.settings import Settings
from carepath.web import candidates, checkin, docs, measures, pages
from carepath.web.guard import install_csrf


def install(app: FastAPI, config: Settings) -> None:
    install_csrf(app, config.csrf_secret)
    for router in (pages.router, docs.router, checkin.router, candidates.router, measures.router):
        app.include_router(router)
