"""Staff accounts for the tests: made in intake's schema, signed in over HTTP."""

from __future__ import annotations

from typing import Any

import httpx

from services.intake.admin import provision

PASSWORD = "correct horse battery staple"
# name -> (role, binding); the clerk files at intake's default centre C01, window W01.
STAFF: dict[str, tuple[str, dict[str, str]]] = {
    "clerk-c01-w01": ("clerk", {"centre_id": "C01", "window_id": "W01"}),
    "clerk-c02-w01": ("clerk", {"centre_id": "C02", "window_id": "W01"}),
    "officer-ss": ("department_officer", {"department": "social_security"}),
    "auditor-1": ("auditor", {}),
    "operator-1": ("operator", {}),
    "admin-1": ("admin", {}),
    "head-c01": ("head", {"centre_id": "C01"}),
    "head-c02": ("head", {"centre_id": "C02"}),
}
CLERK = "clerk-c01-w01"
AUDITOR = "auditor-1"


async def make_staff(database_url: str, *names: str) -> None:
    """Create (or reset) these accounts of :data:`STAFF`, password :data:`PASSWORD`."""
    for name in names or tuple(STAFF):
        role, binding = STAFF[name]
        await provision(database_url, name, role, PASSWORD, **binding)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_in(http: httpx.AsyncClient, name: str, password: str = PASSWORD) -> dict[str, Any]:
    """``POST /auth/token``'s answer (access and refresh token) for ``name``."""
    response = await http.post("/auth/token", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def sign_in_sync(base: str, name: str, password: str = PASSWORD) -> str:
    """An access token for ``name`` from the intake at ``base``."""
    response = httpx.post(
        f"{base}/auth/token", json={"name": name, "password": password}, timeout=30
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token
