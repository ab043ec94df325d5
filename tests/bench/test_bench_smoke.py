"""bench/ still works: one tiny run of two scenarios, end to end (no timing asserted).

The benchmarks themselves run with `make bench`, never in `make test`.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_bench_quick_run(zk_hosts: str, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--hosts", zk_hosts, "--quick", "--clients", "",
         "--only", "get_seq,get_pipelined", "--rounds", "1", "--warmup", "0",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    elapsed = time.monotonic() - t0
    doc = json.loads(out.read_text())
    seq = doc["scenarios"]["get_seq"]["clients"]
    assert set(seq) == {"raw socket", "zkwarden", "zkwarden Client"}
    assert all(row["median"] > 0 for row in seq.values())
    pipelined = doc["scenarios"]["get_pipelined"]
    assert pipelined["clients"]["zkwarden"]["median"] > 0
    assert "raw socket" in pipelined["ratios"]
    names = {t["target"] for t in doc["targets"]}
    assert "pipelined get: zkwarden / raw-socket bound" in names
    assert "| get, pipelined (200 in flight) [ops/s] | raw socket |" in proc.stdout
    assert elapsed < 30, f"the smoke run took {elapsed:.1f}s"


@pytest.mark.timeout(150)
def test_bench_scale_quick_run(zk_hosts: str, tmp_path: Path) -> None:
    """`--scale --quick` runs every scale scenario at tiny sizes: every curve has a finite,
    positive value at every size and its growth factors, the table has one row per curve,
    and the other keys of an existing results.json survive."""
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"scenarios": {"kept": 1}, "scale": {"old": True}}))
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--hosts", zk_hosts, "--scale", "--quick",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=140,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["scenarios"] == {"kept": 1}
    scale = doc["scale"]
    sizes = scale["meta"]["sizes"]
    assert sizes == [20, 50, 100]
    expected = {
        "instances", "instances_cpu", "cache_start", "cache_start_cpu", "cache_rss",
        "roll_reads", "roll_converge", "roll_propagate_p99",
        "children_get", "children_get_cpu", "children_raw", "children_number",
        "children_event", "children_event_cpu",
    } | {f"{kind}_{m}" for kind in ("data", "persistent")
         for m in ("arm", "arm_cpu", "reconnect", "reconnect_cpu", "raw_restore",
                   "reconnect_ratio", "aclose_cpu", "close", "rss")}
    assert set(scale["curves"]) == expected
    for key, curve in scale["curves"].items():
        # May be 0 at these tiny sizes (their growth then undefined): RSS grows in whole
        # pages, and 20 watches may fit in pages the child already has; the rolling
        # restart's delays count from a write's acknowledgement and are 0 when the cache
        # had the change first.
        may_be_zero = key.endswith("_rss") or key in ("roll_converge", "roll_propagate_p99")
        for n in sizes:
            value = curve["median"][str(n)]
            assert value is not None and math.isfinite(value), (key, n, value)
            assert value >= 0 if may_be_zero else value > 0, (key, n, value)
        growth = curve["growth_per_10x"]
        assert len(growth) == len(sizes) - 1, key
        assert all((g is None and may_be_zero) or (g is not None and math.isfinite(g) and g > 0)
                   for g in growth), (key, growth)
        verdicts = ("linear or better", "grows faster than linear") + (("?",) if may_be_zero else ())
        assert curve["verdict"] in verdicts, key
        row = f"| {curve['title']} | {curve['unit']} |"
        assert row in proc.stdout, row
    assert "| measure | unit | N=20 | N=50 | N=100 | growth per 10x | linear | verdict |" \
        in proc.stdout


def test_scale_growth_is_per_10x() -> None:
    """The growth factor is normalised to 10x whatever the step between sizes: a curve
    doubling when N doubles is linear (10x per 10x); one quadrupling is quadratic (100x)."""
    # In a child: under pytest, the name `bench` is this tests/bench package.
    code = """
import json
from bench.scale_base import Curves
curves = Curves()
linear, square = curves.total("a", "a", "ms"), curves.total("b", "b", "ms")
flat = curves.per_item("c", "c", "us")
for n in (50, 100, 1000):
    linear.add(n, n * 0.5)
    square.add(n, n * n * 1e-3)
    flat.add(n, 7.0)
sizes = [50, 100, 1000]
print(json.dumps({k: [c.growth(sizes), c.verdict(sizes)]
                  for k, c in curves.by_key.items()}))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["a"][0] == pytest.approx([10.0, 10.0])
    assert got["b"][0] == pytest.approx([100.0, 100.0])
    assert got["c"][0] == pytest.approx([1.0, 1.0])
    assert [got[k][1] for k in "abc"] == ["linear or better", "grows faster than linear",
                                          "linear or better"]
