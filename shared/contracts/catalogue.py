"""The item catalogue: which departments handle an item, in which order, on what data.

The catalogue is versioned data kept in the repository, one YAML file per
department package (``services/<department>/catalogue.yaml``)::

    department: hr_registration      # the department this file declares
    version: "2026.11.1"             # calendar version YYYY.M.N, quoted
    actions: [job_registration, ...] # optional: the only actions its steps may use
    items:
      - code: HR-JOB-REGISTRATION
        ...

All files are loaded together into one :class:`Catalogue`. Its ``version`` is
``<declared>+<digest>``: ``<declared>`` is the highest version declared by any
file (each department bumps its own file, so the newest bump wins) and
``<digest>`` is the first 12 hex characters of the SHA-256 of the canonical JSON
of every item, sorted by code. The digest makes the version change whenever any
item changes, even if nobody bumped a header; ``CaseRouted`` records it, so an
auditor can tell exactly which rules routed a case.

Anything wrong in the files raises :class:`CatalogueError` naming the file, the
item and the field, so a broken catalogue stops a service at start-up instead of
misrouting cases later.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "CATALOGUE_FILENAME",
    "Catalogue",
    "CatalogueError",
    "CatalogueProblem",
    "FieldSpec",
    "Item",
    "Step",
    "catalogue_from",
    "discover_catalogue_files",
    "load_catalogue",
]

CATALOGUE_FILENAME = "catalogue.yaml"

_SNAKE = r"^[a-z][a-z0-9_]*$"
_ITEM_CODE = r"^[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+$"
# Calendar versioning: year, month, release within the month.
_DECLARED_VERSION = r"^[0-9]{4}\.(?:0?[1-9]|1[0-2])\.[0-9]+$"
_FULL_VERSION = re.compile(r"^(?P<declared>[^+]+)\+(?P<digest>[0-9a-f]{12})$")
_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")

_NonEmpty = Annotated[str, Field(min_length=1)]
_Snake = Annotated[str, Field(pattern=_SNAKE)]


class _Frozen(BaseModel):
    # extra="forbid": a misspelt key in a catalogue file (``promised_day``) must
    # fail loudly, not silently fall back to a default.
    model_config = ConfigDict(frozen=True, extra="forbid")


class FieldSpec(_Frozen):
    """One field the applicant must supply on the form.

    ``min``/``max`` are inclusive bounds and apply to ``int`` fields only.
    """

    name: _Snake
    type: Literal["str", "int", "date", "bool"]
    label: _NonEmpty
    min: StrictInt | None = None
    max: StrictInt | None = None

    @field_validator("min")
    @classmethod
    def _min_only_for_int(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("type") != "int":
            raise ValueError("min applies to int fields only")
        return value

    @field_validator("max")
    @classmethod
    def _max_only_for_int(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return value
        if info.data.get("type") != "int":
            raise ValueError("max applies to int fields only")
        low = info.data.get("min")
        if low is not None and value < low:
            raise ValueError(f"max {value} is below min {low}")
        return value

    def check(self, value: object) -> str | None:
        """Return an error message for a present value, or ``None`` if it fits."""
        if self.type == "int":
            return self._check_int(value)
        return _VALUE_CHECKS[self.type](value)

    def _check_int(self, value: object) -> str | None:
        # bool is a subclass of int; a checkbox value is never a count.
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be a whole number"
        if self.min is not None and value < self.min:
            return f"must be at least {self.min}"
        if self.max is not None and value > self.max:
            return f"must be at most {self.max}"
        return None


def _check_str(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "must not be blank"
    return None


def _check_bool(value: object) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _check_date(value: object) -> str | None:
    # date.fromisoformat alone would also take "20261101" and "2026-W44-1".
    if not isinstance(value, str) or _ISO_DATE.fullmatch(value) is None:
        return "must be a date written YYYY-MM-DD"
    try:
        date.fromisoformat(value)
    except ValueError:
        return f"{value} is not a calendar date"
    return None


_VALUE_CHECKS: Mapping[str, Callable[[object], str | None]] = {
    "str": _check_str,
    "bool": _check_bool,
    "date": _check_date,
}


class Step(_Frozen):
    """One department's part of an item; steps run in the order listed."""

    department: _Snake
    action: _Snake
    name: _NonEmpty


class Item(_Frozen):
    """A service item the window accepts, e.g. ``SS-UNEMPLOYMENT-BENEFIT``."""

    code: Annotated[str, Field(pattern=_ITEM_CODE)]
    name: _NonEmpty
    applicant_kind: Literal["natural", "legal"]
    level: Literal["district", "street", "community"]
    steps: Annotated[tuple[Step, ...], Field(min_length=1)]
    settle_on_spot: StrictBool
    promised_days: Annotated[StrictInt, Field(ge=0)]
    required_fields: tuple[FieldSpec, ...]

    @field_validator("promised_days")
    @classmethod
    def _zero_days_only_on_spot(cls, value: int, info: ValidationInfo) -> int:
        # settle_on_spot is declared first, so it is in info.data if it was valid.
        if value == 0 and info.data.get("settle_on_spot") is False:
            raise ValueError("promised_days may be 0 only when settle_on_spot is true")
        return value

    @field_validator("required_fields")
    @classmethod
    def _unique_field_names(cls, value: tuple[FieldSpec, ...]) -> tuple[FieldSpec, ...]:
        seen: set[str] = set()
        for spec in value:
            if spec.name in seen:
                raise ValueError(f"field {spec.name!r} is listed twice")
            seen.add(spec.name)
        return value

    @property
    def owner(self) -> str:
        """The department of the last step: it closes the case and pays any money."""
        return self.steps[-1].department

    def validate_form(self, form: Mapping[str, object]) -> dict[str, str]:
        """Check a submitted form against ``required_fields``.

        A field that is absent or ``None`` is missing. Strings must not be blank;
        dates are ``YYYY-MM-DD`` strings; ints are ints (not bools) within
        ``min``/``max``; bools are bools. Fields the item does not declare are
        ignored: later steps and other channels may carry extra data.

        Returns:
            ``{field_name: message}`` in declaration order; empty when the form fits.
        """
        errors: dict[str, str] = {}
        for spec in self.required_fields:
            value = form.get(spec.name)
            problem = "is required" if value is None else spec.check(value)
            if problem is not None:
                errors[spec.name] = problem
        return errors


def _items_digest(items: Iterable[Item]) -> str:
    canonical = json.dumps(
        [item.model_dump(mode="json") for item in sorted(items, key=lambda i: i.code)],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


class Catalogue(_Frozen):
    """All items the centre accepts, under one content-derived version.

    Build one with :func:`load_catalogue` or :meth:`Catalogue.build`; direct
    construction is checked, so a catalogue can never carry a version whose
    digest does not match its items.
    """

    version: str
    items: Mapping[str, Item]

    @model_validator(mode="after")
    def _version_matches_items(self) -> Catalogue:
        for code, item in self.items.items():
            if code != item.code:
                raise ValueError(f"items key {code!r} differs from its item code {item.code!r}")
        match = _FULL_VERSION.fullmatch(self.version)
        if match is None:
            raise ValueError(f"version {self.version!r} is not '<declared>+<12 hex digest>'")
        expected = _items_digest(self.items.values())
        if match["digest"] != expected:
            raise ValueError(f"version digest {match['digest']} does not match items ({expected})")
        return self

    @classmethod
    def build(cls, declared_version: str, items: Iterable[Item]) -> Catalogue:
        """Make a catalogue from items, computing ``<declared_version>+<digest>``."""
        by_code = {item.code: item for item in items}
        digest = _items_digest(by_code.values())
        return cls(version=f"{declared_version}+{digest}", items=by_code)

    @property
    def declared_version(self) -> str:
        """The version part before ``+``, as declared in the catalogue files."""
        return self.version.partition("+")[0]

    def get(self, code: str) -> Item | None:
        """Return the item with this code, or ``None`` if the centre does not offer it."""
        return self.items.get(code)

    def departments(self) -> frozenset[str]:
        """Every department named by a step of some item."""
        return frozenset(step.department for item in self.items.values() for step in item.steps)


# --- loading ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogueProblem:
    """One thing wrong with a catalogue file; ``item``/``field`` are None if not applicable."""

    file: str
    item: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        parts = [self.file]
        if self.item is not None:
            parts.append(f"item {self.item}")
        if self.field is not None:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)


class CatalogueError(Exception):
    """The catalogue files cannot be loaded; one line per problem.

    Each line reads ``<file>: item <code>: <field path>: <message>``, e.g.
    ``services/hr_registration/catalogue.yaml: item HR-JOB-REGISTRATION:
    steps.0.department: ...``. ``problems`` holds the same lines as data.
    """

    def __init__(self, problems: Sequence[CatalogueProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _CatalogueFile(_Frozen):
    department: _Snake
    version: Annotated[str, Field(pattern=_DECLARED_VERSION)]
    actions: tuple[_Snake, ...] | None = None
    items: tuple[Item, ...]


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that rejects a key repeated in one mapping. On libyaml's parser where
    PyYAML was built with it (the wheels are): every service start and every replay loads
    the catalogue, and the C parser is several times faster (docs/performance.md).

    Plain YAML keeps the last of two ``promised_days:`` lines without a word;
    in a catalogue that silently changes a promise to the public.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def _display(path: Path) -> str:
    # Paths under the working directory print relative to it
    # ("services/hr_registration/catalogue.yaml" from a checkout): the same on every machine.
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _item_label(raw: object, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("code"), str):
        return str(raw["code"])
    return f"#{index} (no code)"


def _problems_from_validation(
    shown: str, raw: Mapping[str, object], exc: ValidationError
) -> list[CatalogueProblem]:
    raw_items = raw.get("items")
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        item: str | None = None
        if len(loc) >= 2 and loc[0] == "items" and isinstance(loc[1], int):
            index = loc[1]
            raw_item = raw_items[index] if isinstance(raw_items, list) else None
            item = _item_label(raw_item, index)
            loc = loc[2:]
        field = ".".join(str(part) for part in loc) or None
        message = error["msg"].removeprefix("Value error, ")
        problems.append(CatalogueProblem(shown, item, field, message))
    return problems


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        detail = exc.problem or "invalid YAML"
        if exc.context:
            detail = f"{detail} ({exc.context})"
        return f"YAML error at line {mark.line + 1}, column {mark.column + 1}: {detail}"
    return "YAML error: " + " ".join(str(exc).split())


def _read_file(path: Path) -> _CatalogueFile:
    shown = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError([CatalogueProblem(shown, None, None, f"cannot read: {exc}")]) from exc
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        problem = CatalogueProblem(shown, None, None, _describe_yaml_error(exc))
        raise CatalogueError([problem]) from exc
    if not isinstance(raw, dict):
        problem = CatalogueProblem(
            shown, None, None, "top level must be a mapping with department, version, items"
        )
        raise CatalogueError([problem])
    try:
        return _CatalogueFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogueError(_problems_from_validation(shown, raw, exc)) from exc


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def load_catalogue(files: Sequence[Path]) -> Catalogue:
    """Load catalogue files together into one :class:`Catalogue`.

    Beyond each file's own schema, checks across files: every department is
    declared by one file only, every item code is unique, every step names a
    department some file declares, and when that file lists ``actions``, the
    step's action is one of them. The declared version is the highest one found.

    Raises:
        CatalogueError: listing every problem found, each naming file, item and field.
    """
    if not files:
        raise CatalogueError([CatalogueProblem("<none>", None, None, "no catalogue files given")])
    loaded = [(_display(path), _read_file(path)) for path in files]

    problems: list[CatalogueProblem] = []
    declared_by: dict[str, tuple[str, _CatalogueFile]] = {}
    for shown, parsed in loaded:
        if parsed.department in declared_by:
            other = declared_by[parsed.department][0]
            message = f"{parsed.department!r} is also declared by {other}"
            problems.append(CatalogueProblem(shown, None, "department", message))
        else:
            declared_by[parsed.department] = (shown, parsed)

    defined_in: dict[str, str] = {}
    items: list[Item] = []
    for shown, parsed in loaded:
        for item in parsed.items:
            if item.code in defined_in:
                message = f"duplicate item code, also defined in {defined_in[item.code]}"
                problems.append(CatalogueProblem(shown, item.code, "code", message))
                continue
            defined_in[item.code] = shown
            items.append(item)
            problems.extend(_step_problems(shown, item, declared_by))
    if problems:
        raise CatalogueError(problems)

    declared = max((parsed.version for _, parsed in loaded), key=_version_key)
    return Catalogue.build(declared, items)


def _step_problems(
    shown: str, item: Item, declared_by: Mapping[str, tuple[str, _CatalogueFile]]
) -> list[CatalogueProblem]:
    problems = []
    for index, step in enumerate(item.steps):
        owner = declared_by.get(step.department)
        if owner is None:
            known = ", ".join(sorted(declared_by))
            message = (
                f"department {step.department!r} is not declared by any loaded catalogue"
                f" file (declared: {known})"
            )
            problems.append(
                CatalogueProblem(shown, item.code, f"steps.{index}.department", message)
            )
            continue
        owner_file, owner_parsed = owner
        if owner_parsed.actions is not None and step.action not in owner_parsed.actions:
            message = f"action {step.action!r} is not among the actions declared by {owner_file}"
            problems.append(CatalogueProblem(shown, item.code, f"steps.{index}.action", message))
    return problems


def _catalogues_under(root: Path) -> list[Path]:
    return sorted(
        child / CATALOGUE_FILENAME
        for child in root.iterdir()
        if child.is_dir() and (child / CATALOGUE_FILENAME).is_file()
    )


def discover_catalogue_files(roots: Sequence[Path]) -> list[Path]:
    """Find the catalogue files of the department packages under ``roots``.

    In each root, ``<root>/<department>/catalogue.yaml`` is taken for every direct
    subfolder that has one, and a ``catalogue.yaml`` placed directly in a root is taken
    too (tests and pilot departments). The services hand in their own folder first
    (``services.catalogue``), then the configured extra folders: this module never
    imports the services it serves.

    Returns:
        Paths in a stable order: root by root, each root's departments by name.
    """
    found: list[Path] = []
    for root in roots:
        direct = root / CATALOGUE_FILENAME
        if direct.is_file():
            found.append(direct)
        found.extend(_catalogues_under(root))
    return found


def catalogue_from(roots: Sequence[Path]) -> Catalogue:
    """Load every catalogue file found under ``roots`` (see ``discover_catalogue_files``)."""
    return load_catalogue(discover_catalogue_files(roots))
