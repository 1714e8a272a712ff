"""The interactive API pages work on an offline intranet: every asset is served locally."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from shared.platform.apidocs import ASSETS, ASSETS_URL, api_app, assets_dir
from shared.platform.settings import Settings
from tests.support.pages import check_offline_pages, page_urls

pytestmark = pytest.mark.unit


def _settings(api_docs: bool) -> Settings:
    return Settings(database_url=SecretStr("postgresql://u@localhost/db"), api_docs=api_docs)


def _client(api_docs: bool, root_path: str = "") -> httpx.AsyncClient:
    app = api_app("onedoor test", _settings(api_docs))
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


def test_the_assets_ship_in_an_installed_package() -> None:
    for name in ASSETS:
        assert (assets_dir() / name).stat().st_size > 1000, name


async def test_the_pages_load_only_local_assets_and_each_answers() -> None:
    async with _client(api_docs=True) as http:
        sizes = await check_offline_pages(http)
    assert set(sizes) >= {f"{ASSETS_URL}/{name}" for name in ASSETS} | {"/openapi.json"}
    assert sizes[f"{ASSETS_URL}/swagger-ui-bundle.js"] > 500_000


async def test_behind_a_proxy_the_pages_load_from_under_its_path() -> None:
    async with _client(api_docs=True, root_path="/intake") as http:
        html = (await http.get("/intake/docs")).text
    assert all(url.startswith("/intake/") for url in page_urls(html)), page_urls(html)


async def test_the_public_validator_is_off() -> None:
    async with _client(api_docs=True) as http:
        assert '"validatorUrl": null' in (await http.get("/docs")).text


async def test_no_pages_and_no_assets_unless_turned_on() -> None:
    async with _client(api_docs=False) as http:
        for url in ("/docs", "/redoc", "/openapi.json", f"{ASSETS_URL}/swagger-ui.css"):
            assert (await http.get(url)).status_code == 404, url
