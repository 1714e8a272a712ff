"""A newcomer's first command works in a private folder.

As root, in a folder of mode 0700 (root's home folder is one), `make stack-up` once
failed at once: PostgreSQL runs as its own system user, which kept root's group and so
could not traverse a root-owned 0700 folder to reach the server's binaries in the
checkout's virtual environment. This test clones the repository into such a folder and
runs the launcher from there, on ports of its own, next to the stack the suite uses.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import socket
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from deploy import stack as local_stack
from tests.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _free_ports(count: int, start: int = 21000, stop: int = 29000) -> list[int]:
    """Free ports below the ephemeral range (see the README's note on the stack's ports)."""
    found: list[int] = []
    for port in range(start, stop):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        found.append(port)
        if len(found) == count:
            return found
    raise RuntimeError("no free ports for a second stack")


@pytest.mark.timeout(900)
def test_make_stack_up_from_a_clone_in_a_root_owned_0700_folder(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the failure needs root: the launcher runs PostgreSQL as its own user then")
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert private.stat().st_uid == 0
    clone = private / "onedoor"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)

    kafka, controller, pg = _free_ports(3)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ONEDOOR_", "KAFKA_", "DATABASE_", "VIRTUAL_ENV"))
    } | {
        "ONEDOOR_KAFKA_PORT": str(kafka),
        "ONEDOOR_KAFKA_CONTROLLER_PORT": str(controller),
        "ONEDOOR_PG_PORT": str(pg),
        "ONEDOOR_KAFKA_HEAP": "256m",
    }

    def make(target: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", target],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    try:
        up = make("stack-up")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert f"up on 127.0.0.1:{pg}" in up.stdout + up.stderr
        assert make("stack-status").returncode == 0
        # A new cluster asks every login for its password; the passwords lie in files
        # only their owner may read, and the launcher printed none of them.
        data = clone / ".data"
        hba = (data / "postgres" / "pgdata" / "pg_hba.conf").read_text().splitlines()
        methods = {line.split()[-1] for line in hba if line.strip() and line[0] != "#"}
        assert methods == {"scram-sha-256"}
        secrets = list((data / "secrets").glob("*.password"))
        assert {p.name for p in secrets} >= {"postgres.password", "onedoor_intake.password"}
        assert {stat.S_IMODE(p.stat().st_mode) for p in secrets} == {0o600}
        printed = up.stdout + up.stderr
        assert not [p.name for p in secrets if p.read_text().strip() in printed]
    finally:
        down = make("stack-down")
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-2000:]


def test_kraft_storage_formats_with_a_cluster_id_that_begins_with_a_dash(
    stack: Stack, tmp_path: Path
) -> None:
    """A random id is URL-safe base64, so one in 64 begins with "-" (CI met one).

    The real StorageTool, on the suite's fetched jars, formats a fresh node with such an
    id: the launcher passes it in a form argparse cannot mistake for an option.
    """
    if stack.local is None:
        pytest.skip("needs the local stack's fetched Kafka jars")
    cfg = dataclasses.replace(stack.local, data_dir=tmp_path / "data")
    cfg.kafka_dir.mkdir(parents=True)
    cfg.jars_dir.symlink_to(stack.local.jars_dir)
    dashed = "-" + base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")[1:]
    (cfg.kafka_dir / "cluster.id").write_text(dashed)

    local_stack._format_kafka_storage(cfg, 0, local_stack._write_kafka_config(cfg, 0))

    meta = (cfg.kafka_log_dir(0) / "meta.properties").read_text()
    assert f"cluster.id={dashed}" in meta
