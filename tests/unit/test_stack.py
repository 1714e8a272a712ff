"""The local stack launcher's checks that need no server."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from deploy import stack
from tests.e2e.harness import free_port

pytestmark = pytest.mark.unit


def config(data_dir: Path, pg_port: int = 25432) -> stack.StackConfig:
    return stack.StackConfig(
        data_dir=data_dir,
        kafka_port=29092,
        kafka_controller_port=29093,
        pg_port=pg_port,
        kafka_heap="256m",
        start_timeout_s=5,
        kafka_nodes=1,
    )


def test_a_server_running_on_another_port_is_named_with_the_fix(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    cfg.pg_data.mkdir(parents=True)
    # A live pid (ours) and the old default port, as postmaster.pid writes them.
    lines = [str(os.getpid()), str(cfg.pg_data), "1764230400", "55432", str(cfg.pg_dir)]
    (cfg.pg_data / "postmaster.pid").write_text("\n".join(lines) + "\n")
    with pytest.raises(stack.StackError, match=r"running on port 55432.*make stack-down"):
        stack.start_postgres(cfg)


def test_a_port_in_the_ephemeral_range_is_warned_about(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # the kernel hands out a port of that very range
        port = int(sock.getsockname()[1])
    stack._require_free(port, "PostgreSQL", "ONEDOOR_PG_PORT")
    assert f"port {port} for PostgreSQL is in this machine's ephemeral range" in (
        capsys.readouterr().out
    )
    stack._require_free(free_port(), "PostgreSQL", "ONEDOOR_PG_PORT")  # below the range
    assert "ephemeral" not in capsys.readouterr().out


def test_the_broker_jvm_takes_the_configured_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = tmp_path / "server.properties"
    monkeypatch.delenv("ONEDOOR_KAFKA_JVM_OPTS", raising=False)
    default = stack.kafka_command(stack.StackConfig.from_env(), 0, "java", props)
    assert "-XX:TieredStopAtLevel=1" in default
    assert default[-2:] == ["kafka.Kafka", str(props)]

    monkeypatch.setenv("ONEDOOR_KAFKA_JVM_OPTS", " -XX:+AlwaysPreTouch  -Dx=1 ")
    chosen = stack.kafka_command(stack.StackConfig.from_env(), 0, "java", props)
    assert "-XX:TieredStopAtLevel=1" not in chosen
    assert chosen[chosen.index("-XX:+AlwaysPreTouch") + 1] == "-Dx=1"

    monkeypatch.setenv("ONEDOOR_KAFKA_JVM_OPTS", "")
    plain = stack.kafka_command(stack.StackConfig.from_env(), 0, "java", props)
    assert not [arg for arg in plain if arg.startswith("-XX:Tiered")]
