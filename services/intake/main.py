"""Intake's wiring: ``build(settings)`` for ``python -m services.intake``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fastapi import FastAPI

from services.catalogue import default_catalogue
from services.intake import citizen, notifier, pages, signin
from services.intake.acceptor import Acceptor
from services.intake.api import StatusViews, create_app
from shared.contracts.catalogue import Catalogue
from shared.contracts.topology import INTAKE, all_topics
from shared.messaging.access import AccessRecorder
from shared.messaging.consumer import BatchProcessor, ConsumerLoop
from shared.platform import oidc
from shared.platform.privacy_keys import load_centre_secret
from shared.platform.runtime import Plumbing, ServiceContext, Topics, open_service
from shared.platform.settings import ConfigError, Settings
from shared.platform.tokens import TokenIssuer, TokenVerifier, load_signing_key

NAME = INTAKE
MIGRATIONS = [Path(__file__).parent / "migrations"]


def topics(departments: Iterable[str]) -> Topics:
    """Reads cases.routing (its status view); writes cases.accepted; creates every
    topic (the windows' cases wait in its outbox until the rest of the pipeline is up)."""
    departments = sorted(set(departments))
    return Topics.of(NAME, departments, provisions=all_topics(departments))


def wire(
    plumbing: Plumbing, catalogue: Catalogue, issuer_of_oidc: oidc.OidcVerifier | None = None
) -> ServiceContext:
    """Intake on opened plumbing: the acceptor behind its HTTP app, and one consumer
    loop that keeps its status view current. ``issuer_of_oidc``: an OpenID Connect
    issuer whose staff tokens are accepted beside intake's own."""
    settings = plumbing.settings
    sender = notifier.from_settings(settings)
    processor = BatchProcessor(
        settings,
        plumbing.pool,
        plumbing.writer,
        StatusViews(),
        consumer_name=NAME,
        keys=plumbing.keys,
    )
    views = ConsumerLoop(settings, plumbing.topics.consumes, group_id=NAME, processor=processor)
    acceptor = Acceptor(
        settings,
        plumbing.pool,
        plumbing.writer,
        committed=plumbing.relay.wake,
        secret=load_centre_secret(settings.privacy_key_path()),
    )
    key_path = require_token_key(settings)
    issuer = TokenIssuer(load_signing_key(key_path), settings.access_token_ttl_s)
    verifier = TokenVerifier(issuer.verify_key, oidc=issuer_of_oidc)
    recorder = AccessRecorder(
        plumbing.pool, plumbing.writer, service=NAME, committed=plumbing.relay.wake
    )

    def add_routes(app: FastAPI) -> None:
        signin.add_routes(app, settings, plumbing.pool, issuer)
        citizen.CitizenDesk(
            settings,
            plumbing.pool,
            issuer=issuer,
            verifier=verifier,
            notifier=sender,
            catalogue=catalogue,
            recorder=recorder,
        ).add_routes(app)
        # The window page and the citizen's phone page, on the API above (in-process).
        pages.add_routes(app, settings, plumbing.pool, verifier, catalogue)

    return plumbing.service(
        loops=[views],
        http=lambda live: create_app(
            live,
            acceptor,
            catalogue,
            verifier,
            recorder,
            add_routes,
        ),
        on_close=[acceptor.close],
        # It accepts cases into its outbox while the broker is away: keep it in service.
        ready_without_kafka=True,
    )


async def build(settings: Settings, catalogue: Catalogue | None = None) -> ServiceContext:
    """Intake: its catalogue, schema, topics, relay, acceptor, status view and app."""
    catalogue = catalogue or default_catalogue(settings.catalogue_dirs)
    issuer_of_oidc = await oidc.load(settings)  # a configuration error stops here
    require_token_key(settings)  # before anything is opened
    load_centre_secret(settings.privacy_key_path())  # likewise: a missing secret stops here
    plumbing = await open_service(
        NAME,
        settings,
        schema=NAME,
        migrations=MIGRATIONS,
        topics=topics(catalogue.departments()),
        # Windows are served while the broker is away: cases wait in the outbox.
        provision_later=True,
    )
    plumbing.log.info("catalogue loaded", version=catalogue.version, items=len(catalogue.items))
    return wire(plumbing, catalogue, issuer_of_oidc)


def require_token_key(settings: Settings) -> Path:
    """The path of intake's token signing key, made ahead of time (``onedoor-admin
    token-key``, a mounted Secret), never here: a key made on the fly by one replica signs
    tokens no other replica accepts, and a lost one signs everybody out.

    Raises:
        ConfigError: the key file is missing (the message names the fix).
    """
    path = settings.token_key_path()
    if not path.exists():
        raise ConfigError(
            f"intake's token signing key {path} is missing; create it with "
            f"onedoor-admin token-key --path {path} (or mount it: ONEDOOR_TOKEN_KEY_FILE)"
        )
    return path
