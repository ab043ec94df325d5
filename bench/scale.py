"""``python -m bench --scale``: how zkwarden's costs grow from N = 1,000 to 100,000.

Three workloads at each size (see bench/README.md, "Scale"): a service of N instances
(:mod:`bench.scale_service`), N watches on one client and N children under one node
(:mod:`bench.scale_watches`). Every measure becomes a curve with its growth per 10x
(:mod:`bench.scale_base`); the table flags any curve that grows faster than linear. The
results go into ``results.json`` under ``"scale"``, the file's other keys kept.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ._common import SESSION_TIMEOUT, LoopThread, load_average, server_for_run
from .scale_base import Ctx, Curves, loop_native_id
from .scale_service import Service, run_service
from .scale_watches import Children, run_children, run_watches

FULL_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (20, 50, 100)
ROUNDS = 3  # measured rounds per size (--quick: 1); the warm-up is per scenario


def parse_sizes(text: str | None, quick: bool) -> list[int]:
    """Raises ValueError on a malformed list (fewer than two sizes, not increasing)."""
    if not text:
        return list(QUICK_SIZES if quick else FULL_SIZES)
    sizes = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    if len(sizes) < 2 or any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)) or sizes[0] < 1:
        raise ValueError(f"--scale-sizes needs two or more increasing sizes, got {text!r}")
    return sizes


def main(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    try:
        sizes = parse_sizes(args.scale_sizes, args.quick)
    except ValueError as exc:
        log(str(exc))
        return 2
    rounds = 1 if args.quick else ROUNDS
    started = time.monotonic()
    load_before = load_average()
    log(f"scale: sizes {', '.join(f'{n:,}' for n in sizes)}, {rounds} rounds; load average "
        f"before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} on "
        f"{os.cpu_count()} CPUs")
    curves = Curves()
    loads: dict[str, float] = {}
    notes: list[str] = []
    with ExitStack() as stack:
        host, port, server_version = server_for_run(args.hosts, stack, log)
        loop = LoopThread("scale-zkwarden")
        stack.callback(loop.close)
        zk = loop.run(_connect(f"{host}:{port}"))
        stack.callback(lambda: loop.run(zk.close(), timeout=600))
        ctx = Ctx(host, port, loop, zk, loop_native_id(loop), rounds, curves, log, notes)
        service = Service(ctx)
        children = Children(ctx)
        stack.callback(service.drop)
        stack.callback(children.drop)
        for n in sizes:
            log(f"N = {n:,}: a service of N instances ...")
            run_service(ctx, service, n)
            for kind in ("data", "persistent"):
                log(f"N = {n:,}: {kind} watches ...")
                run_watches(ctx, children, n, kind)
            log(f"N = {n:,}: N children ...")
            run_children(ctx, children, n)
            loads[str(n)] = load_average()[0]
        log("deleting the scale nodes ...")
    load_after = load_average()
    doc = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "server": server_version if not args.hosts else f"external {args.hosts}",
            "sizes": sizes,
            "rounds": rounds,
            "quick": args.quick,
            "session_timeout": SESSION_TIMEOUT,
            "load_before": load_before,
            "load_after": load_after,
            "load_by_size": loads,
            "wall_seconds": time.monotonic() - started,
        },
        "curves": {k: c.as_json(sizes) for k, c in curves.by_key.items()},
        "notes": notes + [note for c in curves.by_key.values() for note in c.notes],
    }
    print(render(doc))
    path = Path(args.json)
    try:
        existing = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        existing = {}
    existing["scale"] = doc
    path.write_text(json.dumps(existing, indent=1) + "\n")
    log(f"wrote the \"scale\" key of {path} ({doc['meta']['wall_seconds']:.0f}s)")
    return 0


async def _connect(hosts: str) -> Any:
    from zkwarden import AsyncClient

    zk = AsyncClient(hosts, session_timeout=SESSION_TIMEOUT, track_ensemble=False)
    await zk.start()
    return zk


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(doc: dict[str, Any]) -> str:
    """The scale table (markdown): one row per measure, one column per size."""
    meta = doc["meta"]
    sizes: list[int] = meta["sizes"]
    head = ["measure", "unit", *(f"N={n:,}" for n in sizes), "growth per 10x", "linear",
            "verdict"]
    lines = [
        f"### Scale ({meta['date']}, {meta['rounds']} rounds, load {meta['load_before'][0]:.2f}"
        f" before, {meta['load_after'][0]:.2f} after)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for curve in doc["curves"].values():
        growth = ", ".join(f"{g:.1f}x" if g is not None else "–"
                           for g in curve["growth_per_10x"])
        cells = [curve["title"], curve["unit"],
                 *(_fmt(curve["median"][str(n)]) for n in sizes), growth,
                 f"{curve['linear_growth_per_10x']:g}x", curve["verdict"]]
        lines.append("| " + " | ".join(cells) + " |")
    if doc["notes"]:
        lines += ["", *(f"- {note}" for note in doc["notes"])]
    return "\n".join(lines)
