"""What the browser tests share: Debian's Chromium (driven by Playwright at
``/usr/bin/chromium``; Playwright's own browsers are never downloaded) and the folder
of screenshots, emptied once per session so every module's pictures stay."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path(os.environ.get("ONEDOOR_CHROMIUM", "/usr/bin/chromium"))
INSTALL = "apt-get install -y chromium fonts-noto-cjk libjs-chart.js"
SHOTS = Path(os.environ.get("ONEDOOR_SCREENSHOTS", ".data/screenshots"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: the browser tests need Debian's chromium and CJK "
            f"fonts; install them with: {INSTALL}",
            pytrace=False,
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def shots() -> Path:
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
