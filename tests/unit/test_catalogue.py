"""The item catalogue: the real files, loading errors, form checks, versioning, discovery."""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from services.catalogue import catalogue_files, default_catalogue
from shared.contracts.catalogue import (
    Catalogue,
    CatalogueError,
    Item,
    discover_catalogue_files,
    load_catalogue,
)

pytestmark = pytest.mark.unit

# The actions each department's adapter implements (agreed in the routing brief).
ACTIONS = {
    "hr_registration": {
        "job_registration",
        "employment_registration",
        "employment_service_card",
        "training_subsidy",
        "startup_subsidy",
        "recruitment_filing",
        "labour_contract_filing",
        "certificate",
    },
    "social_security": {
        "benefit_claim",
        "insurance_enrolment",
        "company_insurance_registration",
        "insurance_transfer",
        "pension_claim",
        "medical_card",
        "maternity_benefit",
        "work_injury_filing",
        "certificate",
    },
}
LEGAL_ONLY_ACTIONS = {"recruitment_filing", "labour_contract_filing", "work_injury_filing"}


def _fields(item: Item) -> dict[str, tuple[str, int | None, int | None]]:
    return {f.name: (f.type, f.min, f.max) for f in item.required_fields}


def _steps(item: Item) -> list[tuple[str, str]]:
    return [(s.department, s.action) for s in item.steps]


# --- the real catalogue ---------------------------------------------------------


def test_real_catalogue_files_are_discovered() -> None:
    files = catalogue_files()
    shown = {p.relative_to(p.parents[2]).as_posix() for p in files}
    assert {
        "services/hr_registration/catalogue.yaml",
        "services/social_security/catalogue.yaml",
    } <= shown


def test_real_catalogue_shape(catalogue: Catalogue) -> None:
    items = list(catalogue.items.values())
    assert len(items) >= 40
    on_spot = sum(item.settle_on_spot for item in items) / len(items)
    assert 0.25 <= on_spot <= 0.35
    assert {item.applicant_kind for item in items} == {"natural", "legal"}
    assert {item.level for item in items} == {"district", "street", "community"}
    assert re.fullmatch(r"2026\.11\.1\+[0-9a-f]{12}", catalogue.version)
    assert catalogue.declared_version == "2026.11.1"
    assert {"hr_registration", "social_security"} <= catalogue.departments()


def test_real_catalogue_is_balanced_between_departments(catalogue: Catalogue) -> None:
    owners = Counter(item.owner for item in catalogue.items.values())
    assert owners["hr_registration"] >= 18
    assert owners["social_security"] >= 18
    prefixes = {"hr_registration": "HR-", "social_security": "SS-"}
    for item in catalogue.items.values():
        assert item.code.startswith(prefixes[item.owner]), item.code


def test_real_catalogue_uses_only_agreed_actions(catalogue: Catalogue) -> None:
    for item in catalogue.items.values():
        for step in item.steps:
            assert step.action in ACTIONS.get(step.department, set()), (item.code, step)
            if step.action in LEGAL_ONLY_ACTIONS:
                assert item.applicant_kind == "legal", item.code


def test_real_catalogue_promises_are_realistic(catalogue: Catalogue) -> None:
    for item in catalogue.items.values():
        assert 1 <= len(item.required_fields) <= 5, item.code
        if item.settle_on_spot:
            assert item.promised_days <= 3, item.code
        else:
            assert 1 <= item.promised_days <= 20, item.code
    zero_day = [i for i in catalogue.items.values() if i.promised_days == 0]
    assert zero_day
    assert all(i.settle_on_spot for i in zero_day)


def test_real_catalogue_action_field_contracts(catalogue: Catalogue) -> None:
    # Each adapter reads these fields; every item using the action must collect them.
    needs: dict[str, dict[str, str]] = {
        "job_registration": {"education": "str", "desired_occupation": "str"},
        "benefit_claim": {"insured_months": "int"},
        "company_insurance_registration": {"company_name": "str", "employee_count": "int"},
        "maternity_benefit": {"birth_date": "date"},
        "training_subsidy": {"course_name": "str", "course_hours": "int"},
    }
    for item in catalogue.items.values():
        fields = _fields(item)
        for step in item.steps:
            for name, kind in needs.get(step.action, {}).items():
                assert name in fields, (item.code, step.action, name)
                assert fields[name][0] == kind, (item.code, name)
            if step.action == "training_subsidy":
                low = fields["course_hours"][1]
                assert low is not None
                assert low >= 1, item.code


def test_job_registration_item(catalogue: Catalogue) -> None:
    item = catalogue.get("HR-JOB-REGISTRATION")
    assert item is not None
    assert item.applicant_kind == "natural"
    assert item.level in {"community", "street"}
    assert _steps(item) == [("hr_registration", "job_registration")]
    assert item.settle_on_spot is False
    assert item.promised_days == 1
    assert _fields(item) == {
        "education": ("str", None, None),
        "desired_occupation": ("str", None, None),
    }
    assert item.owner == "hr_registration"


def test_unemployment_benefit_item(catalogue: Catalogue) -> None:
    item = catalogue.get("SS-UNEMPLOYMENT-BENEFIT")
    assert item is not None
    assert item.applicant_kind == "natural"
    assert item.level == "district"
    assert _steps(item) == [
        ("hr_registration", "job_registration"),
        ("social_security", "benefit_claim"),
    ]
    assert item.settle_on_spot is False
    assert item.promised_days == 10
    assert _fields(item) == {
        "last_employer": ("str", None, None),
        "separation_date": ("date", None, None),
        "insured_months": ("int", 0, 600),
        "education": ("str", None, None),
        "desired_occupation": ("str", None, None),
    }
    assert item.owner == "social_security"


def test_company_insurance_registration_item(catalogue: Catalogue) -> None:
    item = catalogue.get("SS-COMPANY-INSURANCE-REGISTRATION")
    assert item is not None
    assert item.applicant_kind == "legal"
    assert item.level == "district"
    assert _steps(item) == [("social_security", "company_insurance_registration")]
    assert item.settle_on_spot is False
    assert item.promised_days == 5
    assert _fields(item) == {
        "company_name": ("str", None, None),
        "legal_representative": ("str", None, None),
        "employee_count": ("int", 1, None),
        "registered_address": ("str", None, None),
    }


def test_unknown_item_is_none(catalogue: Catalogue) -> None:
    assert catalogue.get("HR-NO-SUCH-ITEM") is None


def test_catalogue_models_are_frozen(catalogue: Catalogue) -> None:
    item = catalogue.get("HR-JOB-REGISTRATION")
    assert item is not None
    with pytest.raises(ValidationError):
        item.promised_days = 30  # type: ignore[misc]


# --- validate_form ---------------------------------------------------------------

GOOD_BENEFIT_FORM: dict[str, object] = {
    "last_employer": "Hengda Textiles Co., Ltd.",
    "separation_date": "2026-10-08",
    "insured_months": 38,
    "education": "secondary vocational",
    "desired_occupation": "warehouse keeper",
}


def test_validate_form_accepts_a_complete_form(catalogue: Catalogue) -> None:
    item = catalogue.get("SS-UNEMPLOYMENT-BENEFIT")
    assert item is not None
    assert item.validate_form(GOOD_BENEFIT_FORM) == {}
    assert item.validate_form({**GOOD_BENEFIT_FORM, "note": 123}) == {}


def test_validate_form_reports_every_missing_field_in_order(catalogue: Catalogue) -> None:
    item = catalogue.get("SS-UNEMPLOYMENT-BENEFIT")
    assert item is not None
    errors = item.validate_form({})
    assert list(errors) == [
        "last_employer",
        "separation_date",
        "insured_months",
        "education",
        "desired_occupation",
    ]
    assert set(errors.values()) == {"is required"}
    assert item.validate_form({**GOOD_BENEFIT_FORM, "education": None}) == {
        "education": "is required"
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("insured_months", "38", "must be a whole number"),
        ("insured_months", 38.0, "must be a whole number"),
        ("insured_months", True, "must be a whole number"),
        ("insured_months", -1, "must be at least 0"),
        ("insured_months", 601, "must be at most 600"),
        ("separation_date", "2026/10/08", "must be a date written YYYY-MM-DD"),
        ("separation_date", "20261008", "must be a date written YYYY-MM-DD"),
        ("separation_date", "2026-W41-4", "must be a date written YYYY-MM-DD"),
        ("separation_date", 20261008, "must be a date written YYYY-MM-DD"),
        ("separation_date", "2026-02-30", "2026-02-30 is not a calendar date"),
        ("last_employer", 42, "must be a string"),
        ("last_employer", "   ", "must not be blank"),
    ],
)
def test_validate_form_type_errors(
    catalogue: Catalogue, field: str, value: object, message: str
) -> None:
    item = catalogue.get("SS-UNEMPLOYMENT-BENEFIT")
    assert item is not None
    assert item.validate_form({**GOOD_BENEFIT_FORM, field: value}) == {field: message}


def test_validate_form_bounds_are_inclusive(catalogue: Catalogue) -> None:
    item = catalogue.get("SS-UNEMPLOYMENT-BENEFIT")
    assert item is not None
    assert item.validate_form({**GOOD_BENEFIT_FORM, "insured_months": 0}) == {}
    assert item.validate_form({**GOOD_BENEFIT_FORM, "insured_months": 600}) == {}


def test_validate_form_bool_fields(catalogue: Catalogue) -> None:
    item = catalogue.get("SS-MATERNITY-ALLOWANCE")
    assert item is not None
    form: dict[str, object] = {
        "birth_date": "2026-10-20",
        "employer_name": "Riverside Clinic",
        "multiple_birth": False,
    }
    assert item.validate_form(form) == {}
    assert item.validate_form({**form, "multiple_birth": "no"}) == {
        "multiple_birth": "must be true or false"
    }
    assert item.validate_form({**form, "multiple_birth": 0}) == {
        "multiple_birth": "must be true or false"
    }


# --- writing throw-away catalogue files -------------------------------------------


def _item(code: str = "PX-PERMIT", department: str = "pilot", **over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "code": code,
        "name": "Pilot permit",
        "applicant_kind": "natural",
        "level": "street",
        "steps": [{"department": department, "action": "review", "name": "Review"}],
        "settle_on_spot": False,
        "promised_days": 3,
        "required_fields": [{"name": "reason", "type": "str", "label": "Reason"}],
    }
    item.update(over)
    return item


def _file_data(
    department: str = "pilot", version: str = "2026.11.1", items: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "department": department,
        "version": version,
        "items": items if items is not None else [_item(department=department)],
    }


def _write(directory: Path, data: object, name: str = "pilot") -> Path:
    path = directory / name / "catalogue.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def _load_error(*files: Path) -> str:
    with pytest.raises(CatalogueError) as info:
        load_catalogue(list(files))
    return str(info.value)


def test_minimal_file_loads(tmp_path: Path) -> None:
    catalogue = load_catalogue([_write(tmp_path, _file_data())])
    assert list(catalogue.items) == ["PX-PERMIT"]
    assert catalogue.departments() == frozenset({"pilot"})


# --- each failure mode names file, item and field -------------------------------------


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, 'department: pilot\nversion: "2026.11.1"\nitems: [\n  {code: X\n')
    message = _load_error(path)
    assert message.startswith(f"{path}: YAML error at line 5, column 1: ")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    text = yaml.safe_dump(_file_data(), sort_keys=False).replace(
        "  promised_days: 3\n", "  promised_days: 3\n  promised_days: 30\n"
    )
    path = _write(tmp_path, text)
    message = _load_error(path)
    assert message == (
        f"{path}: YAML error at line 14, column 3: "
        "found duplicate key 'promised_days' (while constructing a mapping)"
    )


@pytest.mark.parametrize(
    ("override", "field", "fragment"),
    [
        ({"promised_days": -1}, "promised_days", "greater than or equal to 0"),
        ({"promised_days": "3"}, "promised_days", "valid integer"),
        ({"promised_days": 0}, "promised_days", "0 only when settle_on_spot is true"),
        ({"settle_on_spot": "yes please"}, "settle_on_spot", "valid boolean"),
        ({"applicant_kind": "company"}, "applicant_kind", "'natural' or 'legal'"),
        ({"level": "city"}, "level", "'district', 'street' or 'community'"),
        ({"steps": []}, "steps", "at least 1 item"),
        ({"steps": [{"action": "review", "name": "Review"}]}, "steps.0.department", "required"),
        ({"promised_day": 3}, "promised_day", "Extra inputs are not permitted"),
        (
            {"required_fields": [{"name": "reason", "type": "str", "label": "R", "min": 1}]},
            "required_fields.0.min",
            "min applies to int fields only",
        ),
        (
            {"required_fields": [{"name": "n", "type": "int", "label": "N", "min": 5, "max": 2}]},
            "required_fields.0.max",
            "max 2 is below min 5",
        ),
        (
            {"required_fields": [{"name": "when", "type": "datetime", "label": "When"}]},
            "required_fields.0.type",
            "'str', 'int', 'date' or 'bool'",
        ),
        (
            {
                "required_fields": [
                    {"name": "reason", "type": "str", "label": "Reason"},
                    {"name": "reason", "type": "str", "label": "Reason again"},
                ]
            },
            "required_fields",
            "field 'reason' is listed twice",
        ),
    ],
)
def test_item_schema_errors_name_file_item_and_field(
    tmp_path: Path, override: dict[str, Any], field: str, fragment: str
) -> None:
    good = _item(code="PX-GOOD")
    bad = _item(code="PX-BAD")
    bad.update(override)
    path = _write(tmp_path, _file_data(items=[good, bad]))
    message = _load_error(path)
    first = message.splitlines()[0]
    assert first.startswith(f"{path}: item PX-BAD: {field}: ")
    assert fragment in first


def test_item_without_code_is_named_by_position(tmp_path: Path) -> None:
    bad = _item()
    del bad["code"]
    message = _load_error(_write(tmp_path, _file_data(items=[_item(code="PX-OK"), bad])))
    assert ": item #1 (no code): code: Field required" in message


def test_every_problem_in_a_file_is_reported(tmp_path: Path) -> None:
    bad_a = _item(code="PX-A", level="city")
    bad_b = _item(code="PX-B", promised_days=-2)
    with pytest.raises(CatalogueError) as info:
        load_catalogue([_write(tmp_path, _file_data(items=[bad_a, bad_b]))])
    assert [(p.item, p.field) for p in info.value.problems] == [
        ("PX-A", "level"),
        ("PX-B", "promised_days"),
    ]


def test_real_file_paths_are_shown_relative_to_the_project(tmp_path: Path) -> None:
    clash = _item(code="HR-JOB-REGISTRATION", department="hr_registration")
    extra = _write(tmp_path, _file_data(items=[clash]))
    message = _load_error(*catalogue_files(), extra)
    assert message == (
        f"{extra}: item HR-JOB-REGISTRATION: code: duplicate item code, "
        "also defined in services/hr_registration/catalogue.yaml"
    )


def test_duplicate_code_within_one_file(tmp_path: Path) -> None:
    path = _write(tmp_path, _file_data(items=[_item(), _item()]))
    message = _load_error(path)
    assert f"{path}: item PX-PERMIT: code: duplicate item code, also defined in {path}" in message


def test_step_with_undeclared_department(tmp_path: Path) -> None:
    steps = [
        {"department": "pilot", "action": "review", "name": "Review"},
        {"department": "housing", "action": "grant", "name": "Grant"},
    ]
    path = _write(tmp_path, _file_data(items=[_item(steps=steps)]))
    message = _load_error(path)
    assert message.startswith(f"{path}: item PX-PERMIT: steps.1.department: ")
    assert "'housing' is not declared by any loaded catalogue file (declared: pilot)" in message


def test_step_with_undeclared_action(tmp_path: Path) -> None:
    data = _file_data()
    data["actions"] = ["inspect"]
    path = _write(tmp_path, data)
    message = _load_error(path)
    assert message == (
        f"{path}: item PX-PERMIT: steps.0.action: action 'review' is not among "
        f"the actions declared by {path}"
    )


def test_department_declared_twice(tmp_path: Path) -> None:
    first = _write(tmp_path, _file_data(), name="one")
    second = _write(tmp_path, _file_data(items=[_item(code="PX-OTHER")]), name="two")
    message = _load_error(first, second)
    assert message == f"{second}: department: 'pilot' is also declared by {first}"


@pytest.mark.parametrize(
    ("version", "fragment"),
    [
        (None, "version: Field required"),
        (2026.11, "version: Input should be a valid string"),
        ("2026.13.1", "version: String should match pattern"),
        ("v1", "version: String should match pattern"),
        ("2026.11.1+abc", "version: String should match pattern"),
    ],
)
def test_missing_or_invalid_version_header(tmp_path: Path, version: object, fragment: str) -> None:
    data: dict[str, Any] = _file_data()
    if version is None:
        del data["version"]
    else:
        data["version"] = version
    path = _write(tmp_path, data)
    message = _load_error(path)
    assert message.startswith(f"{path}: {fragment}")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "- just\n- a list\n")
    assert _load_error(path) == (
        f"{path}: top level must be a mapping with department, version, items"
    )


def test_no_files_is_an_error() -> None:
    with pytest.raises(CatalogueError, match="no catalogue files given"):
        load_catalogue([])


# --- versioning ---------------------------------------------------------------------------


def test_version_is_deterministic_and_ignores_item_order(tmp_path: Path) -> None:
    items = [_item(code="PX-A"), _item(code="PX-B")]
    forward = load_catalogue([_write(tmp_path / "f", _file_data(items=items))])
    backward = load_catalogue([_write(tmp_path / "b", _file_data(items=items[::-1]))])
    assert forward.version == backward.version
    assert forward == backward


@pytest.mark.parametrize(
    "change",
    [
        {"promised_days": 4},
        {"name": "Pilot permit (renamed)"},
        {"settle_on_spot": True},
        {"required_fields": [{"name": "reason", "type": "str", "label": "Why"}]},
    ],
)
def test_version_changes_when_an_item_changes(tmp_path: Path, change: dict[str, Any]) -> None:
    before = load_catalogue([_write(tmp_path / "before", _file_data())])
    changed = copy.deepcopy(_file_data())
    changed["items"][0].update(change)
    after = load_catalogue([_write(tmp_path / "after", changed)])
    assert before.declared_version == after.declared_version == "2026.11.1"
    assert before.version != after.version


def test_declared_version_is_the_highest_numerically(tmp_path: Path) -> None:
    older = _write(tmp_path, _file_data(version="2026.9.3"), name="pilot")
    newer = _write(
        tmp_path,
        _file_data(department="annex", version="2026.11.1", items=[_item("AX-ONE", "annex")]),
        name="annex",
    )
    # "2026.9.3" > "2026.11.1" as strings; versions must compare as numbers.
    assert load_catalogue([older, newer]).declared_version == "2026.11.1"
    assert load_catalogue([newer, older]).declared_version == "2026.11.1"


def test_catalogue_rejects_a_version_that_does_not_match_its_items(tmp_path: Path) -> None:
    real = load_catalogue([_write(tmp_path, _file_data())])
    forged = real.version[:-1] + ("0" if real.version[-1] != "0" else "1")
    with pytest.raises(ValidationError, match="does not match items"):
        Catalogue(version=forged, items=real.items)
    with pytest.raises(ValidationError, match="differs from its item code"):
        Catalogue(version=real.version, items={"PX-OTHER": real.items["PX-PERMIT"]})
    assert Catalogue.build("2026.11.1", real.items.values()) == real


def test_catalogue_survives_a_json_round_trip(catalogue: Catalogue) -> None:
    again = Catalogue.model_validate_json(catalogue.model_dump_json())
    assert again == catalogue
    assert again.version == catalogue.version


# --- discovery ---------------------------------------------------------------------------


def test_discover_with_extra_root_finds_throwaway_department(tmp_path: Path) -> None:
    root = tmp_path / "departments"
    pilot = _write(root, _file_data(), name="pilot")
    (root / "empty_dept").mkdir()
    (root / "notes.txt").write_text("not a department", encoding="utf-8")

    files = catalogue_files([root])
    assert files[-1] == pilot
    assert len(files) == len(catalogue_files()) + 1

    combined = default_catalogue([root])
    assert combined.get("PX-PERMIT") is not None
    assert "pilot" in combined.departments()
    assert combined.get("SS-UNEMPLOYMENT-BENEFIT") is not None


def test_discover_takes_a_catalogue_directly_in_an_extra_root(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(_file_data()), encoding="utf-8")
    assert catalogue_files([tmp_path])[-1] == path
    assert discover_catalogue_files([tmp_path]) == [path]
