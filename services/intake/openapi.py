"""Intake's OpenAPI document, built from the app itself without a database or a broker
(``docs/openapi.json``, written by ``make contracts``).

The app is the one :func:`services.intake.main.wire` serves, routes and all, wired on
inert plumbing: nothing is connected, so only the document and the API pages answer.
POST /cases is answered by the lean front in production; its route on the FastAPI app
documents the same answers (:mod:`services.intake.responses`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import nacl.signing
import structlog
from fastapi import FastAPI
from pydantic import SecretStr

from services.catalogue import default_catalogue
from services.intake import main
from services.intake.api import CasesFront
from shared.messaging.outbox import OutboxWriter
from shared.messaging.signing import Signer
from shared.platform.metrics import ServiceMetrics
from shared.platform.privacy_keys import generate_privacy_key
from shared.platform.runtime import Plumbing, RunningService
from shared.platform.settings import Settings
from shared.platform.tokens import generate_key


def document() -> dict[str, Any]:
    """The OpenAPI document of intake's HTTP API, as its ``/openapi.json`` serves it."""
    return docs_app().openapi()


def docs_app() -> FastAPI:
    """Intake's FastAPI app with its API pages on, for its document and pages only: any
    request that needs the database, the broker or the acceptor fails."""
    with tempfile.TemporaryDirectory() as keys:
        token_key = Path(keys) / "access-token.key"
        generate_key(token_key)  # a throw-away key: the docs app issues no token
        privacy_key = Path(keys) / "centre.key"
        generate_privacy_key(privacy_key)  # likewise: the docs app seals nothing
        settings = Settings(
            database_url=SecretStr("postgresql://docs@localhost/docs"),  # never connected
            api_docs=True,
            token_key_file=token_key,
            privacy_key_file=privacy_key,
        )
        catalogue = default_catalogue()
        signer = Signer(main.NAME, nacl.signing.SigningKey(bytes(32)))  # never signs
        inert: Any = None
        plumbing = Plumbing(
            name=main.NAME,
            settings=settings,
            log=structlog.get_logger("intake.openapi"),
            pool=inert,
            signer=signer,
            keys=inert,
            writer=OutboxWriter(signer),
            relay=cast(Any, SimpleNamespace(wake=lambda: None)),
            topics=main.topics(catalogue.departments()),
        )
        service = main.wire(plumbing, catalogue)
    assert service.http is not None
    counters = SimpleNamespace(published=0, retries=0, dead_letter_reasons={})
    live = SimpleNamespace(service=service, metrics=ServiceMetrics((), counters))
    front = service.http(cast(RunningService, live))
    assert isinstance(front, CasesFront)
    return front.app
