"""What the interactive API pages load, for the tests that prove they work offline."""

from __future__ import annotations

import re

import httpx

_URL = re.compile(r"""(?:src|href|spec-url)="([^"]+)"|\burl: '([^']+)'""")


def page_urls(html: str) -> list[str]:
    """Every URL a docs page loads or links to (scripts, styles, icons, the document)."""
    return [a or b for a, b in _URL.findall(html)]


async def check_offline_pages(http: httpx.AsyncClient) -> dict[str, int]:
    """Fetch /docs and /redoc, then everything they load: each must be a local path that
    answers 200, and no page may name an outside address. Returns bytes per URL."""
    sizes: dict[str, int] = {}
    for page in ("/docs", "/redoc"):
        response = await http.get(page)
        assert response.status_code == 200, page
        html = response.text
        assert "http://" not in html
        assert "https://" not in html
        urls = page_urls(html)
        assert len(urls) >= 3, urls  # the document, a script, an icon at least
        for url in urls:
            assert url.startswith("/"), url
            assert not url.startswith("//"), url
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
            sizes[url] = len(asset.content)
    return sizes
