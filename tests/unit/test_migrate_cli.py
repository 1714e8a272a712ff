"""onedoor-migrate's plan and its answers to a wrong call (exit 2, with the fix), before
it touches Kafka or PostgreSQL. Its real run: tests/e2e/test_ops.py."""

from __future__ import annotations

import pytest

from services import migrate
from services.catalogue import default_catalogue

pytestmark = pytest.mark.unit


def test_every_service_and_department_has_a_plan() -> None:
    found, skipped = migrate.plans(default_catalogue().departments())
    assert [p.name for p in found] == [
        "intake",
        "router",
        "audit",
        "deadlines",
        "hr_registration",
        "social_security",
    ]
    assert skipped == []
    router = next(p for p in found if p.name == "router")
    assert "cases.accepted" in router.topics.provisions
    assert all(p.migrations for p in found)


def test_a_department_not_installed_here_is_skipped() -> None:
    found, skipped = migrate.plans(["hr_registration", "parks"])
    assert "parks" not in [p.name for p in found]
    assert skipped == ["parks"]


def test_without_the_password_folder_it_says_how(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("ONEDOOR_DB_SECRETS_DIR", raising=False)
    with pytest.raises(SystemExit) as exit_:
        migrate.main([])
    assert exit_.value.code == 2
    assert "--role-passwords DIR" in capsys.readouterr().err


def test_an_unknown_name_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        migrate.main(["--role-passwords", "/nonexistent", "nosuch"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "not a service of this deployment: nosuch" in err
    assert "intake, router, audit" in err
