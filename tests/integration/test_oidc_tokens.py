"""Intake and the audit accept an OpenID Connect issuer's staff tokens, its key set served
over HTTP by a local server (a real socket), on the real PostgreSQL and broker: an
issuer's clerk files and reads a case, its auditor reads the history; a wrong issuer or
audience, an expired token, an unknown key, a bad signature or a token without a onedoor
role are refused, and a key the issuer adds later is fetched and accepted."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from starlette.types import ASGIApp

from services.audit.main import build as build_audit
from services.intake.main import build as build_intake
from shared.contracts.access import REASON_HEADER
from shared.platform.runtime import running
from shared.platform.settings import Settings
from tests.e2e.test_pipeline import BENEFIT_FORM
from tests.support.builders import case_body, person
from tests.support.oidc import AUDIENCE, ISSUER, Issuer, new_key
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration


class JwksServer(BaseHTTPRequestHandler):
    document: ClassVar[bytes] = b'{"keys": []}'
    served: ClassVar[int] = 0

    def do_GET(self) -> None:
        document = JwksServer.document  # taken before it counts as served
        JwksServer.served += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(document)))
        self.end_headers()
        self.wfile.write(document)

    def log_message(self, *_: Any) -> None:
        return


@contextlib.contextmanager
def jwks_server(idp: Issuer) -> Iterator[str]:
    JwksServer.document = idp.jwks()
    JwksServer.served = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), JwksServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    finally:
        server.shutdown()
        server.server_close()


def http(app: ASGIApp, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc", headers=headers
    )


async def test_intake_and_the_audit_accept_the_issuers_tokens_and_refuse_bad_ones(
    settings: Settings,
) -> None:
    idp = Issuer()
    idp.add("rsa-1", "RS256")
    with jwks_server(idp) as url:
        settings = settings.model_copy(
            update={
                "oidc_issuer": ISSUER,
                "oidc_audience": AUDIENCE,
                "oidc_jwks_url": url,
                "oidc_roles_claim": "realm_access.roles",
                "oidc_jwks_min_refresh_s": 0.0,
                "audit_nice": 0,
            }
        )
        async with (
            running(await build_intake(settings)) as intake,
            running(await build_audit(settings)) as audit,
        ):
            front, audit_app = intake.http_app(), audit.http_app()
            assert front is not None
            assert audit_app is not None
            body = case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
            async with http(front, idp.token("rsa-1")) as clerk:
                made = await clerk.post("/cases", json=body)
                assert made.status_code == 201, made.text
                case_id = made.json()["case_id"]
                read = await clerk.get(f"/cases/{case_id}")
                assert read.status_code == 200, read.text
            auditor = idp.token("rsa-1", roles=["auditor"], sub="wang.fang")
            async with http(audit_app, auditor) as client:
                stats = await client.get("/stats")
                assert stats.status_code == 200, stats.text

            stranger = Issuer(issuer="https://evil.example.test")
            stranger.keys = idp.keys
            elsewhere = Issuer(audience="another-app")
            elsewhere.keys = idp.keys
            ghost = Issuer()
            ghost.add("rsa-9")
            refused = {
                "wrong issuer": (stranger.token("rsa-1"), 401),
                "wrong audience": (elsewhere.token("rsa-1"), 401),
                "expired": (idp.token("rsa-1", lifetime_s=-120), 401),
                "unknown kid": (ghost.token("rsa-9"), 401),
                "bad signature": (idp.token("rsa-1", key=new_key("RS256")), 401),
                "no onedoor role": (idp.token("rsa-1", roles=["offline_access"]), 403),
                "clerk of C02": (idp.token("rsa-1", centre="C02"), 403),
            }
            answers = {}
            served = JwksServer.served
            for name, (token, _) in refused.items():
                async with http(front, token) as client:
                    answers[name] = (await client.post("/cases", json=body)).status_code
            assert answers == {name: status for name, (_, status) in refused.items()}
            # The unknown key id made intake read the key set again (in the background).
            await wait_for(lambda: JwksServer.served > served, 10, "the JWKS re-read")

            # The issuer rotates: a new key id is fetched and then accepted.
            idp.add("ec-2", "ES256")
            JwksServer.document = idp.jwks()
            served = JwksServer.served
            rotated = idp.token("ec-2", roles=["auditor"])
            async with http(front, rotated) as client:
                first = await client.get(f"/cases/{case_id}")
                assert first.status_code == 401, first.text  # asked for the new key set

                async def accepted() -> bool:
                    # An auditor says why it reads a case (a PersonalDataAccessed record).
                    why = {REASON_HEADER: "checking a key rotation"}
                    answer = await client.get(f"/cases/{case_id}", headers=why)
                    return answer.status_code == 200

                await wait_for(accepted, 10, "the rotated key accepted")
            assert JwksServer.served > served
