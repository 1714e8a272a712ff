"""A stand-in OpenID Connect issuer for the tests: keys made here, a JWKS document, and
tokens signed as an identity provider would sign them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://idp.example.test/realms/onedoor"
AUDIENCE = "onedoor"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def new_key(alg: str) -> PrivateKey:
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(key: PrivateKey, kid: str, alg: str) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@dataclass
class Issuer:
    """An identity provider's keys (kid -> (alg, private key)) and its JWKS."""

    keys: dict[str, tuple[str, PrivateKey]] = field(default_factory=dict)
    issuer: str = ISSUER
    audience: str = AUDIENCE

    def add(self, kid: str, alg: str = "RS256") -> None:
        self.keys[kid] = (alg, new_key(alg))

    def jwks(self) -> bytes:
        entries = [public_jwk(key, kid, alg) for kid, (alg, key) in self.keys.items()]
        return json.dumps({"keys": entries}).encode()

    def token(
        self,
        kid: str,
        *,
        roles: Any = ("clerk",),
        sub: str = "li.wei",
        lifetime_s: int = 300,
        key: PrivateKey | None = None,
        **claims: Any,
    ) -> str:
        alg, own = self.keys[kid]
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "exp": now + lifetime_s,
            "realm_access": {"roles": list(roles)},
            "centre": "C01",
            "window": "W07",
        }
        body.update(claims)
        return jwt.encode(body, key or own, algorithm=alg, headers={"kid": kid})
