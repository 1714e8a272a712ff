"""``python -m shared.platform.probe``: the container health check.

Asks the service of this container for ``/health`` and exits 0 on a 200 answer, 1
otherwise. Intake and the audit answer on their HTTP port; the consumer services on
their health port. Which service runs is read from the container's first process (the
entry point execs ``python3 -m services.<name>``), because a health check sees the
image's environment, not the command, and on a host network every service's ports are
distinct. Only the standard library: it runs every few seconds.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from shared.platform.settings import Settings

HTTP_SERVICES = ("services.intake", "services.audit")


def probe_port(settings: Settings, command: str) -> int:
    """The port whose /health tells whether the service running ``command`` is up."""
    if any(name in command.split() for name in HTTP_SERVICES):
        return settings.http_port
    return settings.health_port


def main() -> int:
    try:
        command = Path("/proc/1/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        command = ""
    port = probe_port(Settings(), command)
    if not port:
        print(
            "probe: ONEDOOR_HEALTH_PORT is 0: the service serves no health check", file=sys.stderr
        )
        return 1
    url = f"http://127.0.0.1:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:
            ok = answer.status == 200
    except (OSError, urllib.error.URLError) as exc:
        print(f"probe: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
