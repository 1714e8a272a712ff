"""The citizen code notifiers: the file notifier's lines, and the SMS gateway notifier
against a local HTTP server on a real socket (its token, its failures: 5xx, timeout,
nobody listening); the citizen's view masks the ID number and phone."""

from __future__ import annotations

import contextlib
import json
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from services.catalogue import default_catalogue
from services.intake import notifier
from services.intake.citizen import citizen_view, code_hash, same_last4
from services.intake.notifier import FileNotifier, NotifierError, SmsGatewayNotifier
from shared.platform.settings import ConfigError, Settings

pytestmark = pytest.mark.unit


class Gateway(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    status: ClassVar[int] = 200
    hang: ClassVar[threading.Event | None] = None

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        Gateway.received.append({"auth": self.headers.get("Authorization"), **body})
        if Gateway.hang is not None:
            Gateway.hang.wait(5)
        self.send_response(Gateway.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        return


@contextlib.contextmanager
def gateway() -> Iterator[str]:
    Gateway.received.clear()
    Gateway.status = 200
    Gateway.hang = None
    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sms"
    finally:
        if Gateway.hang is not None:
            Gateway.hang.set()
        server.shutdown()
        server.server_close()


async def test_the_file_notifier_appends_one_private_json_line_per_message(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out" / "sms.jsonl"
    sender = FileNotifier(path)
    await sender.send("13912345678", "【一门受理】您的查询验证码为 123456，5分钟内有效。")
    await sender.send("13800138000", "second")
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {
        "to": "13912345678",
        "to_masked": "139****5678",
        "text": "【一门受理】您的查询验证码为 123456，5分钟内有效。",
    }
    assert lines[1]["to"] == "13800138000"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_the_sms_gateway_gets_the_message_with_its_token() -> None:
    with gateway() as url:
        await SmsGatewayNotifier(url, "s3cret", timeout_s=2).send("13912345678", "code 1")
    assert Gateway.received == [{"auth": "Bearer s3cret", "to": "13912345678", "text": "code 1"}]


async def test_a_gateway_failure_timeout_or_absence_is_a_notifier_error() -> None:
    with gateway() as url:
        Gateway.status = 500
        with pytest.raises(NotifierError, match="answered 500"):
            await SmsGatewayNotifier(url, None, timeout_s=2).send("13912345678", "x")
        Gateway.status = 200
        Gateway.hang = threading.Event()
        with pytest.raises(NotifierError, match="unreachable"):
            await SmsGatewayNotifier(url, None, timeout_s=0.3).send("13912345678", "x")
    with pytest.raises(NotifierError, match="unreachable"):
        await SmsGatewayNotifier(url, None, timeout_s=1).send("13912345678", "x")


def test_the_setting_chooses_the_notifier(tmp_path: Path) -> None:
    chosen = notifier.from_settings(Settings(notifier_file=tmp_path / "f.jsonl"))
    assert isinstance(chosen, FileNotifier)
    with pytest.raises(ConfigError, match="ONEDOOR_SMS_GATEWAY_URL"):
        notifier.from_settings(Settings(notifier="sms_gateway"))
    token = tmp_path / "token"
    token.write_text("abc\n")
    sms = notifier.from_settings(
        Settings(notifier="sms_gateway", sms_gateway_url="http://x/", sms_gateway_token_file=token)
    )
    assert isinstance(sms, SmsGatewayNotifier)
    with pytest.raises(ConfigError, match="TOKEN_FILE"):
        notifier.from_settings(
            Settings(
                notifier="sms_gateway",
                sms_gateway_url="http://x/",
                sms_gateway_token_file=tmp_path / "missing",
            )
        )


def test_codes_and_id_digits_compare_as_they_should() -> None:
    salt = b"0123456789abcdef"
    assert code_hash(salt, "123456") == code_hash(salt, "123456")
    assert code_hash(salt, "123456") != code_hash(b"fedcba9876543210", "123456")
    assert same_last4("110***********002X", "002x")
    assert not same_last4("110***********002X", "0021")


def test_the_citizen_view_is_chinese_first_and_masked() -> None:
    row = {
        "receipt_no": "C01-20261127-000042",
        "item_code": "SS-UNEMPLOYMENT-BENEFIT",
        "status": "in_progress",
        "current_step": 1,
        "department": "social_security",
        "outcome": None,
        "reason_code": None,
        "message": None,
        "accepted_at": datetime(2026, 11, 27, 9, tzinfo=UTC),
        "closed_at": None,
        "id_masked": "110***********002X",
        "phone": "13912345678",
    }
    view = citizen_view(row, default_catalogue())
    assert view["status_label"] == "办理中 / in progress"
    assert view["progress"].startswith("办理中 / in progress：第2步 社会保险")
    assert view["applicant"] == {"id_number": "110***********002X", "phone": "139****5678"}
    closed = citizen_view(row | {"status": "closed", "outcome": "rejected"}, default_catalogue())
    assert closed["outcome_label"] == "不予办理 / rejected"
