"""Intake's OpenAPI document, built from the app itself without a database or a broker
(``docs/openapi.json``, written by ``make contracts``).

The app is the one :func:`services.intake.main.wire` serves, routes and all, over inert
stand-ins for what only a request would touch (the pool, the acceptor). POST /cases is
answered by the lean front in production; its route on the FastAPI app documents the
same answers (:mod:`services.intake.responses`).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import asyncpg
from fastapi import FastAPI
from nacl.signing import SigningKey
from pydantic import SecretStr

from services.catalogue import default_catalogue
from services.intake import notifier
from services.intake.acceptor import Acceptor
from services.intake.api import create_app
from services.intake.main import people_routes
from shared.platform.runtime import RunningService
from shared.platform.settings import Settings
from shared.platform.tokens import TokenIssuer, TokenVerifier


def document() -> dict[str, Any]:
    """The OpenAPI document of intake's HTTP API, as its ``/openapi.json`` serves it."""
    return docs_app().openapi()


def docs_app() -> FastAPI:
    """Intake's FastAPI app with its API pages on, for its document and pages only: any
    request that needs the database or the acceptor fails."""
    settings = Settings(
        database_url=SecretStr("postgresql://docs@localhost/docs"),  # never connected
        api_docs=True,
    )
    catalogue = default_catalogue()
    issuer = TokenIssuer(SigningKey(bytes(32)), settings.access_token_ttl_s)  # never issues
    verifier = TokenVerifier(issuer.verify_key)
    pool = cast(asyncpg.Pool, None)
    live = cast(RunningService, SimpleNamespace(service=SimpleNamespace(settings=settings)))
    add_routes = people_routes(
        settings,
        pool,
        issuer=issuer,
        verifier=verifier,
        sender=notifier.from_settings(settings),
        catalogue=catalogue,
    )
    front = create_app(live, cast(Acceptor, None), catalogue, verifier, add_routes)
    return front.app
