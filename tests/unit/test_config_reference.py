"""The configuration reference (docs/configuration.md) is what the settings class makes,
and the README and docs name no variable that nothing reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy import configref
from shared.platform.settings import Settings

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_reference_is_what_the_settings_make() -> None:
    assert configref.REFERENCE.read_text(encoding="utf-8") == configref.reference(), (
        "docs/configuration.md is stale: run make configref"
    )


def test_every_setting_is_described() -> None:
    assert [n for n, f in Settings.model_fields.items() if not f.description] == []


@pytest.mark.parametrize(
    "path",
    [
        "README.md",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").rglob("*.md")),
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "deploy").rglob("*.yaml")),
        "deploy/onedoor.env.example",
    ],
)
def test_the_docs_name_only_variables_something_reads(path: str) -> None:
    named = set(re.findall(r"\bONEDOOR_[A-Z0-9_]+\b", (ROOT / path).read_text(encoding="utf-8")))
    assert named - configref.known_variables() == set()
