"""Every catalogue version ever published, so that ``verify`` judges each case by the
version that routed it, never by today's.

A published version is kept as ``<version>.json`` (the whole :class:`Catalogue`; its
version's digest must match its items, so an edited file does not load) in
``services/audit/catalogues/`` (the repository's, one file per version the services have
shipped; ``tests/unit/test_audit_proof.py`` fails until today's is there) and in the
folder ``ONEDOOR_AUDIT_CATALOGUE_ARCHIVE`` names (a deployment's extra departments).
``python -m services.audit.catalogues [FOLDER]`` writes today's catalogue there.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from shared.contracts.catalogue import Catalogue

ARCHIVE_DIR = Path(__file__).parent / "catalogues"


def archived(folders: Iterable[Path]) -> dict[str, Catalogue]:
    """The catalogues kept in ``folders``, by version."""
    found: dict[str, Catalogue] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            catalogue = Catalogue.model_validate_json(path.read_bytes())
            found[catalogue.version] = catalogue
    return found


def published_catalogues(current: Catalogue, extra: Path | None = None) -> dict[str, Catalogue]:
    """Every published catalogue version: the archive's, ``extra``'s, and today's."""
    folders = [ARCHIVE_DIR, *([extra] if extra is not None else [])]
    return {**archived(folders), current.version: current}


def archive(catalogue: Catalogue, folder: Path = ARCHIVE_DIR) -> Path:
    """Keep ``catalogue`` in ``folder`` (an existing file of that version is the same
    catalogue: its name is its content's digest)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{catalogue.version}.json"
    if not path.exists():
        path.write_text(catalogue.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    from services.catalogue import default_catalogue  # noqa: PLC0415 - the CLI's alone
    from shared.platform.settings import get_settings  # noqa: PLC0415

    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else ARCHIVE_DIR
    path = archive(default_catalogue(get_settings().catalogue_dirs), folder)
    print(f"catalogue kept: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
