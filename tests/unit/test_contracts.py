"""The contracts departments and windows read (docs/asyncapi.yaml, docs/openapi.json) are
what the code makes of itself, complete, and their examples are real records."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from deploy import contracts
from services.catalogue import default_catalogue
from shared.contracts import asyncapi as asyncapi_module
from shared.contracts.events import CaseAccepted, Event, parse_event, registry
from shared.contracts.topology import DLQ_SUFFIX, TOPICS, TopicSpec, writer

pytestmark = pytest.mark.unit


@cache
def asyncapi() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(contracts.asyncapi_text())
    return doc


@cache
def openapi() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(contracts.openapi_text())
    return doc


def test_the_committed_documents_are_what_the_code_makes() -> None:
    made = {contracts.ASYNCAPI_PATH: contracts.asyncapi_text()}
    made[contracts.OPENAPI_PATH] = contracts.openapi_text()
    stale = [str(p.relative_to(contracts.ROOT)) for p in contracts.stale(made)]
    assert stale == [], f"{stale} differ from the code: run make contracts, then commit them"


def test_generation_is_deterministic() -> None:
    assert contracts.asyncapi_text() == contracts.asyncapi_text()
    assert contracts.openapi_text() == contracts.openapi_text()


def test_the_check_mode_sees_a_stale_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "asyncapi.yaml"
    stale.write_text("asyncapi: 3.0.0\n", encoding="utf-8")
    assert contracts.stale({stale: "something else"}) == [stale]
    assert contracts.stale({tmp_path / "missing.json": "{}"}) == [tmp_path / "missing.json"]


def test_every_topic_is_a_channel_with_its_dlq_and_every_event_a_message() -> None:
    channels = {c["address"]: c for c in asyncapi()["channels"].values()}
    for spec in TOPICS:
        assert set(channels[spec.template]["messages"]) == {c.event_type for c in spec.events}
        assert set(channels[spec.template + DLQ_SUFFIX]["messages"]) == {"DeadLetter"}
    assert len(channels) == 2 * len(TOPICS)
    messages = asyncapi()["components"]["messages"]
    assert {m["name"] for m in messages.values()} - {"DeadLetter"} == set(registry.classes())


def test_an_event_on_two_topics_is_a_message_on_each_with_its_own_signer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    twice = (*TOPICS, TopicSpec("ops.copies", "audit", ("router",), (CaseAccepted,), "copies"))
    monkeypatch.setattr(asyncapi_module, "TOPICS", twice)
    doc = asyncapi_module.document(["hr_registration"])
    messages = doc["components"]["messages"]
    ours = messages["CaseAccepted.casesAccepted"]
    copies = messages["CaseAccepted.opsCopies"]
    assert ours["headers"]["properties"]["onedoor-signer"]["const"] == "intake"
    assert copies["headers"]["properties"]["onedoor-signer"]["const"] == "audit"
    assert doc["channels"]["opsCopies"]["messages"]["CaseAccepted"] == {
        "$ref": "#/components/messages/CaseAccepted.opsCopies"
    }
    schema = doc["components"]["schemas"]["CaseAccepted"]
    assert len(schema["required"]) == len(set(schema["required"]))


def test_the_one_writer_sends_and_every_reader_receives() -> None:
    operations = asyncapi()["operations"]
    for spec in TOPICS:
        log_id = next(
            name for name, c in asyncapi()["channels"].items() if c["address"] == spec.template
        )
        sends = [op for op in operations.values() if op["channel"]["$ref"].endswith(f"/{log_id}")]
        by_action = {a: [op for op in sends if op["action"] == a] for a in ("send", "receive")}
        assert len(by_action["send"]) == 1
        assert len(by_action["receive"]) == len(spec.readers)


def test_department_topics_are_parameterised_by_the_departments_shipped() -> None:
    parameter = asyncapi()["components"]["parameters"]["department"]
    assert parameter["examples"] == sorted(default_catalogue().departments())
    tasks = asyncapi()["channels"]["deptTasks"]
    assert tasks["address"] == "dept.{department}.tasks"
    assert tasks["parameters"]["department"]["$ref"] == "#/components/parameters/department"


def _missing_descriptions(schema: dict[str, Any], where: str) -> list[str]:
    missing = []
    for name, prop in schema.get("properties", {}).items():
        if "description" not in prop:
            missing.append(f"{where}.{name}")
    return missing


def test_every_field_of_every_message_is_described() -> None:
    doc = asyncapi()
    missing = [
        gap
        for name, schema in doc["components"]["schemas"].items()
        for gap in _missing_descriptions(schema, name)
    ]
    for name, message in doc["components"]["messages"].items():
        missing += _missing_descriptions(message["headers"], f"{name} headers")
    assert missing == [], "add Field(description=...) to these fields"


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of ``schema`` whose references resolve inside the AsyncAPI document."""
    return Draft202012Validator({**schema, "components": asyncapi()["components"]})


def _carried() -> list[tuple[str, str]]:
    """(address, message id) of every event message of every event-log channel."""
    return [
        (channel["address"], ref["$ref"].rsplit("/", 1)[1])
        for channel in asyncapi()["channels"].values()
        if not channel["address"].endswith(DLQ_SUFFIX)
        for ref in channel["messages"].values()
    ]


@pytest.mark.parametrize(("address", "message_id"), _carried())
def test_each_example_is_a_record_the_code_accepts(address: str, message_id: str) -> None:
    message = asyncapi()["components"]["messages"][message_id]
    (example,) = message["examples"]
    payload, headers = example["payload"], example["headers"]
    assert list(_validator(message["payload"]).iter_errors(payload)) == []
    assert list(_validator(message["headers"]).iter_errors(headers)) == []
    event = parse_event(json.dumps(payload).encode())
    assert isinstance(event, Event)
    assert event.event_type == message["name"]
    assert event.to_dict() == payload
    assert headers["event_type"] == event.event_type
    assert headers["onedoor-signer"] == writer(address.format(department="hr_registration"))


def test_a_wrong_example_would_be_caught() -> None:
    message = asyncapi()["components"]["messages"]["StepAssigned"]
    payload = {**message["examples"][0]["payload"], "step_index": -1}
    assert list(_validator(message["payload"]).iter_errors(payload)) != []
    headers = {**message["examples"][0]["headers"], "onedoor-signer": "intake"}
    assert list(_validator(message["headers"]).iter_errors(headers)) != []


def test_the_records_are_keyed_by_case_and_carry_signatures() -> None:
    for name, message in asyncapi()["components"]["messages"].items():
        key = message["bindings"]["kafka"]["key"]
        assert (key["type"], key["format"]) == ("string", "uuid"), name
        if name != "DeadLetter":
            required = set(message["headers"]["required"])
            assert {"onedoor-signer", "onedoor-signature", "event_type"} <= required


def test_post_cases_documents_every_answer_of_the_front() -> None:
    post = openapi()["paths"]["/cases"]["post"]
    assert set(post["responses"]) >= {"200", "201", "401", "403", "409", "413", "422", "503"}
    schemas = openapi()["components"]["schemas"]
    shape = post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    field_problem = schemas["FieldProblem"]
    assert shape.endswith("/FieldProblems")
    assert set(field_problem["required"]) == {"loc", "msg", "type"}
    too_large = post["responses"]["413"]["content"]["application/json"]["schema"]["$ref"]
    assert too_large.endswith("/Problem")
    assert "Idempotent-Replayed" in post["responses"]["200"]["headers"]
    assert {p["name"] for p in post["parameters"]} >= {"idempotency-key", "authorization"}
