"""The web console (issue 39): see, manage and question knowledge bases in a browser, at /console of
``pgmind serve``.  Server-rendered pages (Jinja2, autoescaped) with htmx, vendored; every page is a
thin view over the library and SQL calls the HTTP API makes, run as the signed-in API key's role.

    sessions.py   sign-in sessions and the sign-in rate limit
    csrf.py       the CSRF rule
    i18n.py       English and Chinese strings, the language choice
    db.py         a transaction as the signed-in role
    web.py        templates, security headers, the session of a request, error pages
    charts.py     charts as server-rendered SVG (templates/_chart.html)
    lag.py        the queue lag's history (sampled once a minute) for the health page
    eval_store.py evaluation runs kept in the pgmind home
    pages/        one module per page family (auth, kbs, create, from_table, search, ask, evaluation, images, models, calls, health)

A new page: a module under pages/ with its own APIRouter, its template under templates/, its
strings in i18n.MESSAGES, and one line below."""
from __future__ import annotations

from fastapi import APIRouter

from .pages import ask, auth, calls, create, evaluation, from_table, health, images, kbs, models, search

router = APIRouter(include_in_schema=False)
for _module in (kbs, create, from_table, search, ask, evaluation, images, calls, models, health, auth):     # (auth last: its catch-all 404)
    router.include_router(_module.router)

__all__ = ["router"]
