"""Turning samples into the results document, the tables and the target verdicts.

Ratios are "zkwarden's speed / the other's speed" (for a time: the other's time / ours),
so above 1 means zkwarden is faster. The headline ratio is the ratio of the medians; the
range after it is the spread of the per-round ratios (rounds are interleaved, so round i
of two clients ran back to back under the same conditions).
"""

from __future__ import annotations

import importlib.metadata
import statistics
from typing import Any

from ._common import Series
from .scenarios import Sizes


def versions(others: set[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("zkwarden", *sorted(others), "uvloop"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _kind(row: str) -> str:
    return row.split()[0] if row.split()[0] in ("zkwarden", "kazoo", "aiozk") else "raw"


def speed_ratio(ours: Series, theirs: Series, better: str) -> dict[str, float]:
    """How many times faster ours is: ratio of medians, and the per-round ratios."""
    if better == "higher":
        head = ours.median / theirs.median
        paired = [a / b for a, b in zip(ours.samples, theirs.samples, strict=False) if b]
    else:
        head = theirs.median / ours.median
        paired = [b / a for a, b in zip(ours.samples, theirs.samples, strict=False) if a]
    return {
        "ratio": head,
        "paired_median": statistics.median(paired) if paired else head,
        "paired_min": min(paired) if paired else head,
        "paired_max": max(paired) if paired else head,
    }


def fmt(value: float) -> str:
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _reference(rows: dict[str, Series]) -> str | None:
    for name in rows:
        if _kind(name) == "zkwarden":
            return name
    return None


# --- the document ---------------------------------------------------------------------------


def build(meta: dict[str, Any], results: dict[str, Any], sizes: Sizes) -> dict[str, Any]:
    scenarios: dict[str, Any] = {}
    for key, sc in results["scenarios"].items():
        rows: dict[str, Series] = sc["clients"]
        ref = _reference(rows)
        ratios: dict[str, Any] = {}
        if ref is not None:
            for name, series in rows.items():
                if name != ref:
                    ratios[name] = speed_ratio(rows[ref], series, sc["better"])
        # CPU per op: lower is better; "zkwarden vs this" is the other's CPU over ours.
        cpu_ratios: dict[str, float] = {}
        if ref is not None and rows[ref].cpu:
            ours = statistics.median(rows[ref].cpu)
            for name, series in rows.items():
                if name != ref and series.cpu and ours > 0:
                    cpu_ratios[name] = statistics.median(series.cpu) / ours
        scenarios[key] = {
            "title": sc["title"], "unit": sc["unit"], "better": sc["better"],
            "cpu_unit": sc.get("cpu_unit"),
            "reference": ref,
            "clients": {name: s.as_json() for name, s in rows.items()},
            "ratios": ratios,
            "cpu_ratios": cpu_ratios,
            "seconds": sc["seconds"],
        }
    idle = results.get("idle")
    memory = results.get("memory")
    doc: dict[str, Any] = {
        "meta": meta,
        "scenarios": scenarios,
        "rolling_restart": results.get("rolling"),
        "idle_cpu_percent": {k: v.as_json() for k, v in idle.items()} if idle else None,
        "memory_mb": {
            group: {k: v.as_json() for k, v in rows.items()}
            for group, rows in memory.items()
        } if memory else None,
    }
    doc["targets"] = targets(doc, sizes)
    return doc


def _median(doc: dict[str, Any], metric: str, row: str) -> float | None:
    sc = doc["scenarios"].get(metric)
    if sc is None or row not in sc["clients"]:
        return None
    return float(sc["clients"][row]["median"])


def targets(doc: dict[str, Any], sizes: Sizes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, op: str, threshold: float, unit: str,
            detail: str = "") -> None:
        if value is None:
            return
        met = value >= threshold if op == ">=" else value <= threshold if op == "<=" else (
            value < threshold)
        out.append({"target": name, "value": value, "op": op, "threshold": threshold,
                    "unit": unit, "met": met, "detail": detail})

    def ratio(metric: str, a: str, b: str, better: str) -> float | None:
        va, vb = _median(doc, metric, a), _median(doc, metric, b)
        if va is None or vb is None:
            return None
        return va / vb if better == "higher" else vb / va

    add("pipelined get: zkwarden / kazoo", ratio("get_pipelined", "zkwarden", "kazoo", "higher"),
        ">=", 3.0, "x")
    add("pipelined get: zkwarden / aiozk", ratio("get_pipelined", "zkwarden", "aiozk", "higher"),
        ">=", 3.0, "x")
    bound = ratio("get_pipelined", "zkwarden", "raw socket", "higher")
    add("pipelined get: zkwarden / raw-socket bound", bound, ">=", 0.90, "x")
    add("pipelined get with get_many: zkwarden / raw-socket bound",
        ratio("get_pipelined", "zkwarden get_many", "raw socket", "higher"), ">=", 0.95, "x")
    # The rows above use gather() of get(), the like-for-like pattern (aiozk's is gather of
    # get_data); get_many is zkwarden's own batch call (no task per read).
    many = "batch API, not like-for-like"
    add("pipelined get with get_many: zkwarden / kazoo",
        ratio("get_pipelined", "zkwarden get_many", "kazoo", "higher"), ">=", 3.0, "x", many)
    add("pipelined get with get_many: zkwarden / aiozk",
        ratio("get_pipelined", "zkwarden get_many", "aiozk", "higher"), ">=", 3.0, "x", many)
    seq_zk = _median(doc, "get_seq", "zkwarden")
    seq_cl = _median(doc, "get_seq", "zkwarden Client")
    seq_raw = _median(doc, "get_seq", "raw socket")
    seq_kz = _median(doc, "get_seq", "kazoo")
    if seq_zk and seq_raw:
        add("sequential get: AsyncClient / raw round trip", seq_zk / seq_raw, "<=", 2.0, "x")
    if seq_cl and seq_raw:
        add("sequential get: blocking Client / raw round trip", seq_cl / seq_raw, "<=", 3.0, "x")
    if seq_cl and seq_zk:
        add("sequential get: blocking Client / AsyncClient", seq_cl / seq_zk, "<=", 1.25, "x")
    if seq_cl and seq_kz:
        add("sequential get: kazoo blocking get / blocking Client", seq_kz / seq_cl, ">=", 1.5,
            "x")
    add("get_children of 10,000: kazoo / zkwarden",
        ratio("children", "zkwarden", "kazoo", "lower"), ">=", 2.0, "x")
    raw_children = ratio("children", "zkwarden", "raw socket", "lower")
    if raw_children:
        add("get_children of 10,000: zkwarden / raw-socket bound", 1 / raw_children, "<=", 2.5,
            "x")
    inst = doc["scenarios"].get("instances", {}).get("clients", {}).get("zkwarden instances()")
    if inst and inst.get("cpu_us_per_op"):
        add("instances(): client CPU per instance", inst["cpu_us_per_op"]["median"], "<=", 10.0,
            "µs")
    for key, sc in doc["scenarios"].items():
        cpu = {name: c["cpu_us_per_op"]["median"] for name, c in sc["clients"].items()
               if c.get("cpu_us_per_op") and name != "raw socket"}
        ours = {name: v for name, v in cpu.items() if name.startswith("zkwarden")}
        others = [v for name, v in cpu.items() if name not in ours]
        if ours and others:
            add(f"client CPU per operation, {key}: lowest other client / zkwarden's lowest",
                min(others) / min(ours.values()), ">=", 1.0, "x")
    add("pipelined create: zkwarden / kazoo", ratio("create", "zkwarden", "kazoo", "higher"),
        ">=", 3.0, "x")
    add("instances(): kazoo N+1 sequential reads / instances()",
        ratio("instances", "zkwarden instances()", "kazoo N+1", "lower"), ">=", 10.0, "x",
        detail="Curator's and kazoo-based registries' pattern")
    add("instances(): zkwarden N+1 sequential reads / instances() (same client)",
        ratio("instances", "zkwarden instances()", "zkwarden N+1", "lower"), ">=", 10.0, "x")
    rolling = doc.get("rolling_restart")
    if rolling:
        s = rolling["series"]
        add("rolling restart: reads per added instance per cache (worst round, worst cache)",
            s["reads_per_add"]["max"], "<=", 1.0, "reads")
        add("rolling restart: reads per removal per cache (worst round, worst cache)",
            s["reads_per_removal"]["max"], "<=", 0.0, "reads")
        add("rolling restart: every cache converged after the last change, p99",
            rolling["pooled"]["converge_p99_ms"], "<=", 100.0, "ms")
    idle = doc.get("idle_cpu_percent")
    if idle and "zkwarden" in idle:
        z = idle["zkwarden"]
        add(f"idle CPU with {sizes.idle_watches:,} watches (% of one core, all windows)",
            z.get("pooled", z["median"]), "<", 0.5, "%")
    mem = doc.get("memory_mb")
    scale = 10_000 / sizes.memory_watches
    per = "" if sizes.memory_watches == 10_000 else f" (scaled from {sizes.memory_watches:,})"
    watches = (mem or {}).get("memory_watches") or {}
    if "zkwarden" in watches and "kazoo" in watches:
        add(f"RSS per 10,000 data watches{per}: AsyncClient streams + consumer tasks / kazoo "
            "get(watch=)", watches["zkwarden"]["median"] / watches["kazoo"]["median"], "<=",
            1.0, "x", detail=f"{watches['zkwarden']['median'] * scale:.1f} MB vs "
            f"{watches['kazoo']['median'] * scale:.1f} MB")
    callbacks = (mem or {}).get("memory_callback_watches") or {}
    ours, theirs = (callbacks.get("zkwarden Client.watch callback"),
                    callbacks.get("kazoo DataWatch"))
    if ours and theirs:
        add(f"RSS per 10,000 callback watches{per}: blocking Client.watch / kazoo DataWatch",
            ours["median"] / theirs["median"], "<=", 1.0, "x",
            detail=f"{ours['median'] * scale:.1f} MB vs {theirs['median'] * scale:.1f} MB")
    if mem and mem.get("memory_cache"):
        cache = mem["memory_cache"]["zkwarden ServiceCache"]["median"]
        per_10k = cache * 10_000 / sizes.memory_instances
        scaled = "" if sizes.memory_instances == 10_000 else (
            f" (scaled from {sizes.memory_instances:,})")
        add(f"RSS of a ServiceCache of 10,000 instances{scaled}", per_10k, "<", 30.0, "MB")
    return out


# --- rendering ---------------------------------------------------------------------------------


def _spread(s: dict[str, Any]) -> str:
    return f"{fmt(s['min'])}–{fmt(s['max'])}"


def render(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    lines: list[str] = []
    vers = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lb, la = meta["load_before"], meta["load_after"]
    lines.append(
        f"{meta['date']} · {meta['cpus']} CPUs · Python {meta['python']} ({meta['event_loop']})"
        f" · {vers} · {meta['server']}"
    )
    lines.append(
        f"{meta['rounds']} measured rounds after {meta['warmup_rounds']} warm-up, interleaved;"
        f" load average {lb[0]:.2f} before, {la[0]:.2f} after; {meta['wall_seconds']:.0f} s"
    )
    if doc["scenarios"]:
        lines.append("")
        lines.append("| Scenario | Client | Median | Spread (min–max) | "
                     "zkwarden vs this (per-round range) | Client CPU (median) | "
                     "CPU: this / zkwarden |")
        lines.append("|---|---|---:|---:|---|---:|---:|")
    for sc in doc["scenarios"].values():
        first = True
        for name, s in sc["clients"].items():
            label = f"{sc['title']} [{sc['unit']}]" if first else ""
            first = False
            r = sc["ratios"].get(name)
            if r is None:
                cell = "reference"
            elif _kind(name) == "raw":
                if sc["better"] == "higher":
                    cell = (f"zkwarden at {r['ratio'] * 100:.0f}% of the bound "
                            f"({r['paired_min'] * 100:.0f}–{r['paired_max'] * 100:.0f}%)")
                else:
                    cell = (f"zkwarden takes {1 / r['ratio']:.2f}× the bound "
                            f"({1 / r['paired_max']:.2f}–{1 / r['paired_min']:.2f}×)")
            else:
                cell = (f"{r['ratio']:.2f}× ({r['paired_min']:.2f}–{r['paired_max']:.2f}×)")
            cpu = s.get("cpu_us_per_op")
            cpu_cell = f"{fmt(cpu['median'])} {sc['cpu_unit']}" if cpu else ""
            cr = sc.get("cpu_ratios", {}).get(name)
            cpu_ratio = "reference" if cpu and name == sc["reference"] else (
                f"{cr:.2f}×" if cr is not None else "")
            lines.append(f"| {label} | {name} | {fmt(s['median'])} | {_spread(s)} | {cell} | "
                         f"{cpu_cell} | {cpu_ratio} |")
    rolling = doc.get("rolling_restart")
    if rolling:
        s, p = rolling["series"], rolling["pooled"]
        lines.append("")
        lines.append(
            f"Rolling restart: {rolling['instances']:,} instances re-registered "
            f"{rolling['batch']} at a time every {rolling['interval_s'] * 1000:.0f} ms, "
            f"watched by {rolling['caches']} ServiceCaches (one client each)"
        )
        lines.append("")
        lines.append("| Measure | Median round | Spread (min–max) | All rounds pooled |")
        lines.append("|---|---:|---:|---:|")
        for key, label, pooled in (
            ("reads_per_add", "reads per added instance per cache (worst cache)", None),
            ("reads_per_removal", "reads per removal per cache (worst cache)", None),
            ("resyncs", "full re-reads (all caches)", None),
            ("converge_p50", "converged after the last change, p50 [ms]", "converge_p50_ms"),
            ("converge_p99", "converged after the last change, p99 [ms]", "converge_p99_ms"),
            ("propagate_p50", "change seen by a cache after its write, p50 [ms]",
             "propagate_p50_ms"),
            ("propagate_p99", "change seen by a cache after its write, p99 [ms]",
             "propagate_p99_ms"),
        ):
            pooled_cell = fmt(p[pooled]) if pooled else ""
            lines.append(f"| {label} | {fmt(s[key]['median'])} | {_spread(s[key])} | "
                         f"{pooled_cell} |")
    idle, mem = doc.get("idle_cpu_percent"), doc.get("memory_mb")
    if idle or mem:
        sizes = meta["sizes"]
        lines.append("")
        lines.append("| Resource | Client | Median | Spread (min–max) | All windows | "
                     "zkwarden vs this |")
        lines.append("|---|---|---:|---:|---:|---|")
        groups: list[tuple[str, dict[str, Any], str]] = []
        if idle:
            groups.append((f"idle CPU, {sizes['idle_watches']:,} watches [% of a core]", idle,
                           "lower"))
        if mem:
            groups.append((f"RSS per {sizes['memory_watches']:,} watches [MB]",
                           mem["memory_watches"], "lower"))
            if mem.get("memory_callback_watches"):
                groups.append((f"RSS per {sizes['memory_watches']:,} callback watches [MB]",
                               mem["memory_callback_watches"], "lower"))
            groups.append((f"RSS per {sizes['memory_instances']:,} cached instances [MB]",
                           mem["memory_cache"], "lower"))
        for title, rows, _better in groups:
            # zkwarden's row (or the group's first, e.g. its Client.watch): the others
            # compare to it.
            ref_name = "zkwarden" if "zkwarden" in rows else next(iter(rows), None)
            ref = rows.get(ref_name) if ref_name is not None else None
            first = True
            for name, s in rows.items():
                label = title if first else ""
                first = False
                if name == ref_name or ref is None:
                    cell = "reference" if name == ref_name else ""
                else:
                    cell = (f"uses {s['median'] / ref['median']:.2f}× zkwarden's"
                            if ref["median"] > 0 else "")
                pooled = fmt(s["pooled"]) if "pooled" in s else ""
                lines.append(f"| {label} | {name} | {fmt(s['median'])} | {_spread(s)} | "
                             f"{pooled} | {cell} |")
    if doc["targets"]:
        lines.append("")
        lines.append("Targets (medians of this run):")
        lines.append("")
        for t in doc["targets"]:
            mark = "met" if t["met"] else "NOT MET"
            unit = "" if t["unit"] == "x" else f" {t['unit']}"
            value = f"{t['value']:.2f}{'×' if t['unit'] == 'x' else unit}"
            threshold = f"{t['threshold']:g}{'×' if t['unit'] == 'x' else unit}"
            detail = f" ({t['detail']})" if t.get("detail") else ""
            lines.append(f"- {t['target']}{detail}: {value} (target {t['op']} {threshold}) — {mark}")
    return "\n".join(lines)
