"""``python -m bench.replay``: the audit replay alone, in CPU time, over one saved log.

``make bench`` times ``onedoor-audit verify`` in wall time, reading from Kafka included,
on a machine other work shares; this measures what the verifier's own code costs per
record, the same log every time:

- ``save FILE`` reads the deployment's whole event log (as ``verify`` does, with the
  audit store's ingest verdicts and the topics' partition counts) into FILE;
- ``run FILE`` replays it with ``services.audit.verifier.replay.verify`` in this process
  and prints the process CPU time per record (the best of ``--repeat`` runs), the
  findings' count by kind and a digest of every finding (two versions of the verifier
  agree on a log exactly when their digests do); ``--profile N`` adds cProfile's top N.

``run`` passes only the arguments the ``verify`` it imports takes, so the same saved log
also measures an older checkout: ``PYTHONPATH=/path/to/checkout python -m bench.replay
run FILE`` from that checkout's folder.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import inspect
import io
import pickle
import pstats
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from services.audit.verifier import log as log_module
from services.audit.verifier import replay as replay_module
from services.catalogue import default_catalogue
from shared.contracts.topology import AUDIT
from shared.messaging.signing import PublicKeys
from shared.platform.settings import Settings


async def _read(settings: Settings) -> dict[str, Any]:
    from services.audit.verifier.stored import verified_digests  # noqa: PLC0415 - I/O only here
    from shared.contracts.events import utcnow  # noqa: PLC0415

    partitions = await log_module.log_partitions(settings)
    records = await log_module.read_log(settings, None, partitions)
    verified = await verified_digests(settings)
    return {
        "records": [
            (
                r.topic,
                r.partition,
                r.offset,
                r.value,
                r.signer,
                r.signature,
                r.key,
                r.timestamp,
            )
            for r in records
        ],
        "verified": frozenset(cast("Iterable[bytes]", verified)),
        "partitions": log_module.partition_counts(partitions, settings.topic_prefix),
        "registry": settings.registry_path().read_bytes(),
        "now": utcnow(),
    }


def _save(path: Path) -> int:
    saved = asyncio.run(_read(Settings().for_service(AUDIT)))  # the log's reader
    path.write_bytes(pickle.dumps(saved, protocol=pickle.HIGHEST_PROTOCOL))
    print(f"saved {len(saved['records'])} records, {len(saved['verified'])} stored verdicts")
    return 0


def _records(saved: dict[str, Any]) -> list[Any]:
    fields = log_module.LogRecord.__dataclass_fields__
    return [log_module.LogRecord(*row[: len(fields)]) for row in saved["records"]]


def _arguments(saved: dict[str, Any], registry: Path) -> dict[str, Any]:
    settings = Settings()
    catalogue = default_catalogue(settings.catalogue_dirs)
    known = inspect.signature(replay_module.verify).parameters
    kwargs: dict[str, Any] = {
        "catalogue": catalogue,
        "keys": PublicKeys.load_or_empty(registry),
        "now": saved["now"],
        "check_signatures": True,
        "verified": saved["verified"],
    }
    if "partitions" in known:
        kwargs["partitions"] = saved["partitions"]
    if "timing" in known:
        from services.audit.verifier.clock import Timing  # noqa: PLC0415 - newer checkouts

        kwargs["timing"] = Timing.of(settings)
    if "published" in known:
        from services.audit.catalogues import published_catalogues  # noqa: PLC0415

        kwargs["published"] = published_catalogues(catalogue, settings.audit_catalogue_archive)
    return kwargs


def _digest(report: Any) -> str:
    lines = sorted(
        f"{v.kind}|{v.case_id}|{v.event_id}|{v.topic}|{v.partition}|{v.offset}|{v.detail}"
        for v in report.violations
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _run(path: Path, repeat: int, profile: int) -> int:
    saved = pickle.loads(path.read_bytes())  # noqa: S301 - a file this tool wrote
    registry = path.with_suffix(".registry.json")
    registry.write_bytes(saved["registry"])
    kwargs = _arguments(saved, registry)
    records = _records(saved)
    if repeat == 0:  # loading alone (what a count of instructions subtracts)
        return 0
    runs: list[float] = []
    report: Any = None
    for _ in range(repeat):
        started = time.process_time()
        report = replay_module.verify(records, **kwargs)
        runs.append(time.process_time() - started)
    assert report is not None
    best = min(runs)
    kinds = Counter(v.kind for v in report.violations)
    print(
        f"REPLAY records={report.records} cpu_s={best:.3f} "
        f"us_per_record={best / max(report.records, 1) * 1e6:.1f} "
        f"cpu_s_per_100k={best / max(report.records, 1) * 1e5:.2f} "
        f"violations={len(report.violations)} digest={_digest(report)}"
    )
    print("  runs (cpu s):", " ".join(f"{r:.3f}" for r in runs))
    print("  by kind:", dict(sorted(kinds.items())))
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        replay_module.verify(records, **kwargs)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(profile)
        print(out.getvalue())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.replay", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="read the deployment's log into FILE")
    save.add_argument("file", type=Path)
    run = sub.add_parser("run", help="replay FILE and print the CPU time per record")
    run.add_argument("file", type=Path)
    run.add_argument("--repeat", type=int, default=3)
    run.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    if args.command == "save":
        return _save(args.file)
    return _run(args.file, args.repeat, args.profile)


if __name__ == "__main__":
    raise SystemExit(main())
