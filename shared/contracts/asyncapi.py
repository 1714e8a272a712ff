"""The AsyncAPI 3.0 document of the event log, generated from the one topology declaration
(:mod:`shared.contracts.topology`) and the event models (:mod:`shared.contracts.events`).

Every topic is a channel (a department's topics are parameterised channels,
`dept.{department}.tasks`), with its dead-letter queue beside it; every event type is
a message with its JSON Schema, its headers and an example; the topic's one writer
sends and each reader receives (operations). The headers of the example are the ones
the outbox writes (:class:`~shared.messaging.outbox.OutboxWriter`), signed by a fixed
example key, so the document shows the records as they are.

`python -m deploy.contracts` writes `docs/asyncapi.yaml`; a unit test fails when the
committed file is not what this module makes of the code.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from collections.abc import Iterable
from typing import Any, Final

import nacl.signing
from pydantic.json_schema import models_json_schema

from shared.contracts import topology
from shared.contracts.events import Event
from shared.contracts.examples import EXAMPLE_DEPARTMENT, example_event
from shared.contracts.topology import DEPARTMENT, OTHER_DEPARTMENTS, TOPICS, TopicSpec
from shared.messaging.outbox import OutboxWriter
from shared.messaging.signing import BATCH_PREFIX, SIGNATURE_HEADER, SIGNER_HEADER, Signer

ASYNCAPI: Final = "3.0.0"
KAFKA_BINDING: Final = "0.5.0"
SCHEMAS: Final = "#/components/schemas/"
DEAD_LETTER: Final = "DeadLetter"

_ACTORS: Final = {
    DEPARTMENT: ("department", "the department named in the address"),
    OTHER_DEPARTMENTS: (
        "learningDepartments",
        "every other department that learns from this department's outcomes "
        "(`Department.learns_from` in the adapter SDK)",
    ),
    topology.OPERATOR: (
        "operator",
        "an operator, through `onedoor-audit dlq redrive` (signing identity `operator`)",
    ),
}

# What each header of an event record means; a header the outbox writes that is not
# described here stops the generator (so a new header gets its description).
_HEADERS: Final = {
    "event_type": "The event's type, as in the value: a reader can route before parsing.",
    "content-type": "The value's media type.",
    SIGNER_HEADER: "The service that signed the value: always the topic's one writer.",
    SIGNATURE_HEADER: (
        "Ed25519 signature of the value's exact bytes by the signer's key valid when the "
        "event occurred (the key registry, `onedoor-keys`): plain base64 for a record "
        f"signed alone, or `{BATCH_PREFIX}<index>.<size>.<signature>.<proof>` for records "
        "written in one transaction (one signature over the root of an RFC 9162 Merkle "
        "tree of their values; `proof`: the base64 sibling hashes from the leaf up). "
        "See shared/messaging/signing.py."
    ),
}
_REDRIVE_HEADERS: Final = {
    topology.REDRIVE_HEADER: (
        "Only on a record an operator re-drove from its dead-letter queue: the exact bytes "
        "of the operator's DeadLetterRedriven event (ops.redrives) that allowed it."
    ),
    topology.REDRIVE_SIGNATURE_HEADER: (
        "Only with onedoor-redrive: the operator's signature of those bytes (as onedoor-signature)."
    ),
}
_TRACE_HEADERS: Final = {
    "traceparent": (
        "Only when tracing is on (ONEDOOR_OTEL_ENDPOINT): the W3C trace context of the span "
        "that caused the event, so one case is one trace. Outside the signature; readers "
        "may ignore it (docs/deploy.md, traces)."
    ),
    "tracestate": "Only with traceparent, when the trace carries vendor state: W3C tracestate.",
}
_DLQ_HEADERS: Final = {
    topology.DLQ_REASON: (
        "Why, machine-readable: the decode or trust failure (malformed, "
        "unknown_event_type, unsupported_schema_version, missing_signature, wrong_signer, "
        "unknown_signer, bad_signature), handler_error, or relay_<why> when the writer's "
        "relay could not publish it."
    ),
    topology.DLQ_ERROR: "The error's text, up to 2,000 characters.",
    topology.DLQ_ORIGINAL_TOPIC: "The logical topic the record was on (or was meant for).",
    topology.DLQ_ORIGINAL_PARTITION: "Its partition there; -1 when it never reached it.",
    topology.DLQ_ORIGINAL_OFFSET: "Its offset there; -1 when it never reached it.",
    topology.DLQ_ORIGINAL_HEADERS: "The original record's headers, as a JSON object.",
    topology.DLQ_CONSUMER: "The consumer (or `<service>-relay`) that dead-lettered it.",
    topology.DLQ_FAILED_AT: "When, in UTC (ISO 8601).",
}
# Consumer groups, as examples, of readers that are not one fixed service.
_GROUPS: Final = {DEPARTMENT: EXAMPLE_DEPARTMENT, OTHER_DEPARTMENTS: "social_security"}
_EXAMPLE_SEED: Final = b"onedoor AsyncAPI example key, published, never used: "


def document(departments: Iterable[str], servers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The AsyncAPI document of a deployment whose departments include `departments`
    (those shipped, named as the examples of the `department` parameter)."""
    shipped = sorted(set(departments))
    doc: dict[str, Any] = {
        "asyncapi": ASYNCAPI,
        "info": {
            "title": "onedoor event log",
            "version": "1",
            "description": _INFO,
        },
        "defaultContentType": "application/json",
        "channels": {},
        "operations": {},
        "components": {
            "schemas": _schemas(),
            "messages": {},
            "parameters": {
                "department": {
                    "description": "A department's name, as its catalogue.yaml declares it. "
                    f"Shipped: {', '.join(shipped)}. A department added later has its "
                    "topics by the same templates, with no change to this document.",
                    "examples": shipped,
                }
            },
        },
    }
    if servers:
        doc["servers"] = servers
    for spec in TOPICS:
        _add_topic(doc, spec)
    return doc


_INFO: Final = """\
Every fact of onedoor is an event on one of these Kafka topics. Records are keyed by \
the case's id (a UUID, as text), so one case stays in one partition and in order. The \
value is the event as one JSON object: `event_type` and `schema_version` first, then \
the envelope (event_id, case_id, occurred_at, producer, causation_id, correlation_id) \
and the payload. Parse with the type and version: an unknown type or a newer version is \
refused (dead-lettered), an older version is upcast on read.

Each topic has one writer, who signs every record (headers `onedoor-signer`, \
`onedoor-signature`); readers and the audit refuse a record signed by anyone else. \
Event-log topics keep their records forever (retention.ms=-1): the log is the truth the \
audit replays. A record that cannot be parsed or handled goes to `<topic>.dlq` with the \
reason and its origin in headers; it is never silently skipped.

Addresses are logical: a deployment puts its `ONEDOOR_TOPIC_PREFIX` in front of each \
topic name and of each consumer group id (the reading service's name). Generated from \
shared/contracts/topology.py and shared/contracts/events.py by `make contracts`."""


def _channel_id(template: str) -> str:
    words = re.findall(r"[a-z0-9]+", re.sub(r"\{[^}]*\}", "", template))
    return str(words[0]) + "".join(w.title() for w in words[1:])


def _message_id(cls: type[Event], channel_id: str) -> str:
    """The event type; with the channel after it for an event that several topics carry
    (each topic has its own signer, so each its own message)."""
    carriers = sum(cls in spec.events for spec in TOPICS)
    return cls.event_type if carriers == 1 else f"{cls.event_type}.{channel_id}"


def _actor(name: str) -> tuple[str, str]:
    return _ACTORS.get(name, (name, f"the {name} service"))


def _schemas() -> dict[str, Any]:
    """Every event model's JSON Schema (validation mode: what a reader accepts), with the
    wire's `event_type` and `schema_version` added, and the models they use."""
    events = list(dict.fromkeys(cls for spec in TOPICS for cls in spec.events))
    _, top = models_json_schema(
        [(cls, "validation") for cls in events], ref_template=SCHEMAS + "{model}"
    )
    schemas: dict[str, Any] = top["$defs"]
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)  # the field's name again
    for cls in events:
        schema = schemas[cls.__name__]
        schema["description"] = _doc(cls)
        schema["properties"] = {
            "event_type": {
                "type": "string",
                "const": cls.event_type,
                "description": "The event's type.",
            },
            "schema_version": {
                "type": "integer",
                "const": cls.schema_version,
                "description": "The version of this type's schema; older versions are "
                "upcast on read.",
            },
            **schema["properties"],
        }
        schema["required"] = ["event_type", "schema_version", *schema.get("required", [])]
    return schemas


def _doc(cls: type[Event]) -> str:
    """The class's docstring as one Markdown paragraph (Sphinx roles and double
    backquotes made plain code)."""
    text = " ".join((inspect.getdoc(cls) or cls.event_type).split())
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", text).replace("``", "`")


def _add_topic(doc: dict[str, Any], spec: TopicSpec) -> None:
    templated = DEPARTMENT in spec.template
    log_id = _channel_id(spec.template)
    writer_id, writer_text = _actor(spec.writer)
    readers = [_actor(r) for r in spec.readers]
    messages = doc["components"]["messages"]
    ids = {cls: _message_id(cls, log_id) for cls in spec.events}
    for cls, message_id in ids.items():
        messages[message_id] = _message(spec, cls)
    parameters = {"department": {"$ref": "#/components/parameters/department"}}
    channel: dict[str, Any] = {
        "address": spec.template,
        "title": spec.template,
        "description": f"{spec.description[0].upper()}{spec.description[1:]}. "
        f"Written by {writer_text} only; read by {', '.join(t for _, t in readers)}.",
        "messages": {c.event_type: _ref("components/messages", ids[c]) for c in spec.events},
    }
    if templated:
        channel["parameters"] = parameters
    doc["channels"][log_id] = channel
    event_refs = [_ref(f"channels/{log_id}/messages", cls.event_type) for cls in spec.events]
    ops = doc["operations"]
    ops[f"{writer_id}.send.{log_id}"] = _operation(
        "send", log_id, event_refs, f"{writer_text} writes {spec.template}", actor=writer_id
    )
    for reader, (reader_id, reader_text) in zip(spec.readers, readers, strict=True):
        ops[f"{reader_id}.receive.{log_id}"] = _operation(
            "receive",
            log_id,
            event_refs,
            f"{reader_text} reads {spec.template}",
            actor=reader_id,
            group=_GROUPS.get(reader, reader),
        )

    dlq_id = f"{log_id}Dlq"
    dlq_channel: dict[str, Any] = {
        "address": f"{spec.template}{topology.DLQ_SUFFIX}",
        "title": f"{spec.template}{topology.DLQ_SUFFIX}",
        "description": f"The dead letters of {spec.template}: records its readers could "
        "not parse, trust or handle, and records the writer's relay could not publish. "
        "Listed, shown and re-driven with `onedoor-audit dlq`.",
        "messages": {DEAD_LETTER: _ref("components/messages", DEAD_LETTER)},
    }
    if templated:
        dlq_channel["parameters"] = parameters
    doc["channels"][dlq_id] = dlq_channel
    messages.setdefault(DEAD_LETTER, _dead_letter())
    dead = [_ref(f"channels/{dlq_id}/messages", DEAD_LETTER)]
    for actor_id, actor_text in [(writer_id, f"{writer_text} (its relay)"), *readers]:
        ops[f"{actor_id}.send.{dlq_id}"] = _operation(
            "send", dlq_id, dead, f"{actor_text} dead-letters a record of {spec.template}"
        )
    ops[f"operator.receive.{dlq_id}"] = _operation(
        "receive", dlq_id, dead, f"an operator reads the dead letters of {spec.template}"
    )


def _ref(where: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/{where}/{name}"}


def _operation(
    action: str,
    channel: str,
    messages: list[dict[str, str]],
    summary: str,
    *,
    actor: str | None = None,
    group: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": _ref("channels", channel),
        "summary": summary[0].upper() + summary[1:] + ".",
        "messages": messages,
    }
    if actor:
        operation["tags"] = [{"name": actor}]
    if group:
        operation["bindings"] = {
            "kafka": {
                "groupId": {
                    "type": "string",
                    "description": "The reader's consumer group: its service name after "
                    "the deployment's ONEDOOR_TOPIC_PREFIX.",
                    "examples": [group],
                },
                "bindingVersion": KAFKA_BINDING,
            }
        }
    return operation


def _key() -> dict[str, Any]:
    return {
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The case's id (case_id), as text: one case, one partition.",
                },
                "bindingVersion": KAFKA_BINDING,
            }
        }
    }


def _message(spec: TopicSpec, cls: type[Event]) -> dict[str, Any]:
    """The message of one event type: schema, headers (with what the outbox writes) and
    an example record."""
    producer = spec.writer.format(department=EXAMPLE_DEPARTMENT)
    event = example_event(cls, producer)
    writer = OutboxWriter(_example_signer(producer))
    row = writer.signed([writer.row(spec.name(EXAMPLE_DEPARTMENT), event)])[0]
    headers = dict(row.headers)
    unknown = sorted(set(headers) - set(_HEADERS))
    if unknown:
        raise KeyError(f"describe the record headers {unknown} in shared/contracts/asyncapi.py")
    properties: dict[str, Any] = {
        name: {"type": "string", "description": _HEADERS[name]} for name in headers
    }
    properties["event_type"]["const"] = cls.event_type
    properties["content-type"]["const"] = headers["content-type"]
    signer = properties[SIGNER_HEADER]
    if DEPARTMENT in spec.writer:
        signer["description"] += " Here the department named in the topic."
    else:
        signer["const"] = spec.writer
    properties |= {n: {"type": "string", "description": t} for n, t in _REDRIVE_HEADERS.items()}
    properties |= {n: {"type": "string", "description": t} for n, t in _TRACE_HEADERS.items()}
    return {
        "name": cls.event_type,
        "title": cls.event_type,
        "summary": _doc(cls).split(". ")[0].rstrip(".") + ".",
        "description": f"{_doc(cls)} On `{spec.template}`, signed by its writer.",
        "contentType": headers["content-type"],
        "correlationId": {
            "description": "Shared by every event of one case's journey.",
            "location": "$message.payload#/correlation_id",
        },
        "headers": {
            "type": "object",
            "required": sorted(headers),
            "properties": properties,
        },
        "payload": _ref("components/schemas", cls.__name__),
        **_key(),
        "examples": [
            {
                "name": f"{cls.event_type}Example",
                "summary": f"{cls.event_type} of the example case, signed by {producer} "
                "with a published example key.",
                "headers": headers,
                "payload": json.loads(row.value),
            }
        ],
    }


def _dead_letter() -> dict[str, Any]:
    return {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A record that could not be processed, with the reason and its origin.",
        "description": "The value and key are the original record's, byte for byte (the "
        "value may be anything: a dead letter is kept because it could not be parsed or "
        "trusted). Dead letters are copies, never signed anew: the original headers are "
        f"in {topology.DLQ_ORIGINAL_HEADERS}.",
        "headers": {
            "type": "object",
            "required": sorted(_DLQ_HEADERS),
            "properties": {
                name: {"type": "string", "description": text} for name, text in _DLQ_HEADERS.items()
            },
        },
        "payload": {"description": "The original record's value, unchanged."},
        **_key(),
    }


def _example_signer(service: str) -> Signer:
    seed = hashlib.sha256(_EXAMPLE_SEED + service.encode()).digest()
    return Signer(service, nacl.signing.SigningKey(seed))
