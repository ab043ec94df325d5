"""``python -m bench``: every scenario, every client, one server, one run.

Starts its own ZooKeeper (zkwarden.testing, forceSync off, full JIT) unless ``--hosts``
names one, warms it up, runs the scenarios (warm-up rounds, then interleaved measured
rounds), prints the tables and the targets, and writes ``bench/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import report
from ._common import ROOT, Series, load_average, server_for_run
from .clients import Clients, connect, installed
from .procs import run_idle, run_memory
from .rolling import run_rolling
from .scenarios import Sizes, in_process_scenarios, run_scenario

ALL = ("get_seq", "get_pipelined", "create_delete", "set_watch", "children", "instances",
       "rolling", "idle", "memory")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def warm_server(c: Clients, seconds: float) -> None:
    """Give the server's JIT the hot paths before anything is measured."""
    raw = c.raw
    deadline = time.monotonic() + seconds
    paths = [f"/bench-warm-{i}" for i in range(2000)]
    while time.monotonic() < deadline:
        raw.pipelined([raw.get_data_frame("/") for _ in range(5000)])
        raw.pipelined([raw.create_frame(p, b"w" * 64) for p in paths])
        raw.pipelined([raw.get_data_frame(p) for p in paths])
        raw.pipelined([raw.delete_frame(p) for p in paths])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--hosts", help="host:port of a running ZooKeeper (default: start one)")
    p.add_argument("--rounds", type=int, default=7, help="measured rounds (default 7)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up rounds (default 1)")
    p.add_argument("--only", default=",".join(ALL),
                   help=f"comma-separated scenarios (default: all of {','.join(ALL)})")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    p.add_argument("--clients", default="kazoo,aiozk",
                   help="other clients to compare (default kazoo,aiozk; those not "
                        "installed are skipped with a warning)")
    p.add_argument("--uvloop", action="store_true", help="run the asyncio clients on uvloop")
    p.add_argument("--server-warmup", type=float, default=None,
                   help="seconds of server JIT warm-up (default 8, 0 with --quick)")
    p.add_argument("--json", default=str(ROOT / "bench" / "results.json"),
                   help="where to write the results (default bench/results.json)")
    p.add_argument("--markdown", help="also write the tables (markdown) to this file")
    p.add_argument("--scale", action="store_true",
                   help="run ONLY the scale scenarios (N = 1,000 / 10,000 / 100,000; see "
                        "bench/README.md); results go under the \"scale\" key of --json")
    p.add_argument("--scale-sizes", help="the sizes of --scale (default 1000,10000,100000; "
                                         "20,50,100 with --quick)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.scale:
        from .scale import main as scale_main

        return scale_main(args, log)
    sizes = Sizes.quick() if args.quick else Sizes.full()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(ALL)
    if unknown:
        log(f"unknown scenarios: {', '.join(sorted(unknown))}")
        return 2
    if args.rounds < 1:
        log("--rounds must be >= 1")
        return 2
    others: set[str] = set()
    for name in (x.strip() for x in args.clients.split(",") if x.strip()):
        if installed(name):
            others.add(name)
        else:
            log(f"warning: {name} is not installed; it is left out (pip install '.[bench]')")
    started = time.monotonic()
    load_before = load_average()
    log(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}"
        f" on {os.cpu_count()} CPUs")
    results: dict[str, Any] = {"scenarios": {}, "rolling": None, "idle": None, "memory": None}
    loads: dict[str, float] = {}
    with ExitStack() as stack:
        host, port, server_version = server_for_run(args.hosts, stack, log)
        c = connect(host, port, others, use_uvloop=args.uvloop)
        stack.callback(c.close)
        warm = args.server_warmup if args.server_warmup is not None else (
            0.0 if args.quick else 8.0)
        if warm > 0:
            log(f"warming the server up for {warm:.0f}s ...")
            warm_server(c, warm)
        for scn in in_process_scenarios():
            if scn.key not in only:
                continue
            log(f"{scn.key}: {args.warmup} warm-up + {args.rounds} rounds ...")
            t0 = time.monotonic()
            out = run_scenario(scn, c, sizes, args.rounds, args.warmup, log)
            loads[scn.key] = load_average()[0]
            for m in scn.metrics:
                results["scenarios"][m.key] = {
                    "title": m.title.format(**asdict(sizes)),
                    "unit": m.unit,
                    "better": m.better,
                    "cpu_unit": m.cpu_unit if m.ops else None,
                    "clients": out[m.key],
                    "seconds": time.monotonic() - t0,
                }
        if "rolling" in only:
            log(f"rolling: {args.warmup} warm-up + {args.rounds} rounds ...")
            results["rolling"] = run_rolling(c, sizes, args.rounds, args.warmup, log)
            loads["rolling"] = load_average()[0]
        if "idle" in only:
            log(f"idle: {args.rounds} windows of {sizes.idle_window:.1f}s ...")
            results["idle"] = run_idle(c, sizes, args.rounds, args.warmup, log)
            loads["idle"] = load_average()[0]
        if "memory" in only:
            log(f"memory: {args.warmup} warm-up + {args.rounds} rounds ...")
            results["memory"] = run_memory(c, sizes, args.rounds, args.warmup, log)
            loads["memory"] = load_average()[0]
    load_after = load_average()
    wall = time.monotonic() - started
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "server": server_version if not args.hosts else f"external {args.hosts}",
        "event_loop": "uvloop" if args.uvloop else "asyncio",
        "versions": report.versions(others),
        "rounds": args.rounds,
        "warmup_rounds": args.warmup,
        "sizes": asdict(sizes),
        "quick": args.quick,
        "load_before": load_before,
        "load_after": load_after,
        "load_by_scenario": loads,
        "wall_seconds": wall,
    }
    doc = report.build(meta, results, sizes)
    text = report.render(doc)
    print(text)
    Path(args.json).write_text(json.dumps(doc, indent=1, default=_jsonable) + "\n")
    log(f"wrote {args.json} ({wall:.0f}s)")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Series):
        return obj.as_json()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


if __name__ == "__main__":
    sys.exit(main())
