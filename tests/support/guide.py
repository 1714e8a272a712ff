"""The department guide's code, as the page shows it (docs/department-guide.md)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "department-guide.md"
EXAMPLES = ROOT / "docs" / "examples"
_BLOCK = re.compile(r'^```[a-z]+ title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)


def guide_files() -> dict[str, str]:
    """Each titled code block of the guide: its file's path (under a folder of department
    packages) and its text."""
    blocks: dict[str, str] = dict(_BLOCK.findall(GUIDE.read_text(encoding="utf-8")))
    assert blocks, f"no titled code blocks in {GUIDE}"
    return blocks


def write_guide_package(root: Path) -> list[Path]:
    """Write the guide's code blocks under ``root``, as a folder of department packages."""
    written = []
    for relative, text in guide_files().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
