"""bench/ still works: one tiny run of two scenarios, end to end (no timing asserted).

The benchmarks themselves run with `make bench`, never in `make test`.
"""

from __future__ import annotations

import json
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
