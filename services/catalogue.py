"""The deployment's item catalogue: the department packages under ``services/`` plus the
extra folders named in ``ONEDOOR_CATALOGUE_DIRS``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shared.contracts.catalogue import Catalogue, catalogue_from, discover_catalogue_files

SERVICES_DIR = Path(__file__).parent


def catalogue_files(extra_roots: Sequence[Path] = ()) -> list[Path]:
    """The catalogue files of the services' department packages, then of ``extra_roots``."""
    return discover_catalogue_files([SERVICES_DIR, *extra_roots])


def default_catalogue(extra_roots: Sequence[Path] = ()) -> Catalogue:
    """The catalogue every service of a deployment loads (same files, same version)."""
    return catalogue_from([SERVICES_DIR, *extra_roots])
