"""``zkwarden demo`` and ``make demo``: end to end (quick mode) and its report."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from zkwarden.cli import exitcodes
from zkwarden.cli.demo.report import Check, Report, Verdict
from zkwarden.cli.output import Output

from ._support import REPO, Cli, Proc

ROWS = [
    r"network drop 1\.5 s",
    r"silent drop 5\.5 s > session",
    r"rolling restart 25% batches",
    r"close\(\) in watch callback",
    r"accept-then-close 3 s",
    r"leader drop 5\.5 s > session",
    r"shutdown: close everything",
]


def _fake_fresh_machine(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH without java (as on a fresh machine) whose apt-get only records its
    arguments; Java stays reachable for the demo through JAVA_HOME, as after installing."""
    java = shutil.which("java")
    make = shutil.which("make")
    # `make test` installs Java and needs make itself: a missing one is a broken setup.
    assert java is not None and make is not None, "run the suite through `make test`"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "apt-calls"
    stub = bin_dir / "apt-get"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    sudo = bin_dir / "sudo"
    sudo.write_text('#!/bin/sh\nexec "$@"\n')
    sudo.chmod(sudo.stat().st_mode | stat.S_IEXEC)
    for tool in ("env", "id", "cat"):
        found = shutil.which(tool)
        if found is not None:
            (bin_dir / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ZOOKEEPER_HOSTS")}
    env["PATH"] = str(bin_dir)
    env["JAVA_HOME"] = str(Path(os.path.realpath(java)).parent.parent)
    return env, calls


def test_make_demo_on_a_fresh_machine_passes_its_invariants(tmp_path: Path) -> None:
    env, calls = _fake_fresh_machine(tmp_path)
    make = shutil.which("make")
    assert make is not None
    started = time.monotonic()
    done = subprocess.run(
        [make, "--no-print-directory", "-C", str(REPO), "demo", f"PYTHON={sys.executable}",
         "DEMO_ARGS=--quick"],
        env=env, capture_output=True, timeout=120,
    )
    took = time.monotonic() - started
    out = done.stdout.decode()
    err = done.stderr.decode()
    assert done.returncode == 0, out + err
    # The missing runtime was installed first, with apt-get, non-interactively.
    installed = calls.read_text().splitlines()
    assert installed[0].startswith("update")
    assert re.match(r"install -y -q --no-install-recommends +default-jre-headless", installed[1])
    assert "installing from apt: default-jre-headless" in out
    # Then the demo ran, narrated each incident, and every invariant held.
    for n in range(1, 7):
        assert f"[{n}/6] " in out
    summary = out[out.index("\nsummary\n"):].splitlines()
    assert summary[2].split()[:6] == ["incident", "views=truth", "recover", "CPU", "attempts",
                                      "leaked"]
    for pattern, line in zip(ROWS, summary[3:10], strict=True):
        assert re.match(rf"  {pattern} .* PASS$", line), line
    assert re.match(r"all \d+ invariants held; [\d.]+ s wall time", summary[10])
    # the leader incident shows both timelines and the measured gap
    assert re.search(r"leader work STOPS", out) and re.search(r"leader work STARTS", out)
    assert re.search(r"saw: A stopped its work [\d.]+ s after the drop .* gap \d+ ms", out)
    assert "Traceback" not in out + err
    assert took < 90


def test_make_demo_recipe_installs_only_what_is_missing() -> None:
    make = shutil.which("make")
    assert make is not None, "run the suite through `make test`"
    done = subprocess.run([make, "-n", "-C", str(REPO), "demo"], capture_output=True,
                          timeout=30, env={**os.environ, "SUDO": ""})
    recipe = done.stdout.decode()
    assert done.returncode == 0
    assert "command -v java" in recipe and "/usr/share/java/zookeeper.jar" in recipe
    assert "ZOOKEEPER_HOME" in recipe
    assert "apt-get install -y -q --no-install-recommends" in recipe
    assert "sys.version_info < (3, 11)" in recipe
    assert re.search(r"PYTHONPATH=src \S+ -m zkwarden demo", recipe)


def _port(text: str) -> int:
    match = re.search(r"ZooKeeper on 127\.0\.0\.1:(\d+)", text)
    assert match, text
    return int(match.group(1))


def test_demo_interrupted_cleans_up(spawn: Callable[..., Proc]) -> None:
    proc = spawn("demo", "--quick")
    line = proc.wait_for(r"ZooKeeper on 127\.0\.0\.1:\d+", timeout=60)
    proc.wait_for(r"^\[1/6\] ", timeout=30)
    assert proc.interrupt(timeout=30) == exitcodes.INTERRUPTED
    assert "interrupted; everything was cleaned up" in proc.output
    assert "Traceback" not in proc.output
    with socket.socket() as sock:  # the JVM is gone
        assert sock.connect_ex(("127.0.0.1", _port(line))) != 0


def test_demo_rejects_bad_sizes(cli: Cli) -> None:
    cli("demo", "--instances", "0", hosts=None).assert_one_line_error(exitcodes.USAGE)
    cli("demo", "--instances", "2", "--clients", "3", hosts=None).assert_one_line_error(
        exitcodes.USAGE)


def test_failed_invariant_exits_10_and_reports_it(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zkwarden.cli.demo as demo

    async def fake_run(config: demo.DemoConfig, out: Output) -> list[Verdict]:
        return [
            Verdict("good", views="5/5", recover=0.1, cpu=0.01, attempts=3,
                    checks=[Check("fine", True)]),
            Verdict("bad", views="4/5", recover=None, leaked_nodes=2,
                    checks=[Check("views equal the truth", False, "4/5 caches equal")]),
        ]

    monkeypatch.setattr(demo, "run_demo", fake_run)
    r = cli("demo", "--quick", hosts=None)
    assert r.code == exitcodes.INVARIANT_FAILED
    lines = r.out.splitlines()
    assert lines[1] == "summary"
    assert re.match(r"  good +5/5 +0\.10 s +0\.01 s +3 +0/0 +PASS$", lines[3])
    assert re.match(r"  bad +4/5 +- +- +- +2/0 +FAIL$", lines[4])
    assert lines[5].startswith("1 of 2 invariants FAILED in ")
    assert lines[6] == "  bad: views equal the truth: 4/5 caches equal"
    # The columns are explained under the table, and -v lists the invariants.
    legend = "\n".join(lines[7:])
    assert "leaked n/s   instance nodes / sessions left on the server" in legend
    assert "recover      seconds from the end of the fault" in legend
    assert "`zkwarden -v demo` lists them" in legend

    r = cli("--json", "demo", "--quick", hosts=None)
    assert r.code == exitcodes.INVARIANT_FAILED
    summary = json.loads(r.out.splitlines()[-1])
    assert summary["event"] == "summary" and summary["ok"] is False
    assert summary["failed"] == [{"incident": "bad", "check": "views equal the truth",
                                  "detail": "4/5 caches equal"}]
    assert [row["ok"] for row in summary["rows"]] == [True, False]


def test_progress_line_rewrites_in_place_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Output()
    monkeypatch.setattr(Output, "is_tty", property(lambda self: True))
    report = Report(out)
    report.progress.update("1.0s  down  clients 0/4")
    report.progress.update("2.0s  up  clients 4/4")
    report.progress.clear()
    text = capsys.readouterr().out
    assert "\n" not in text and text.count("\r") >= 3 and "clients 4/4" in text


def test_verbose_lists_every_invariant_after_each_verdict() -> None:
    import io

    from zkwarden.cli.demo.report import Check, Report, Verdict

    class Captured(Output):
        def __init__(self) -> None:
            super().__init__(False)
            self.buffer = io.StringIO()

        @property
        def stdout(self) -> io.StringIO:  # type: ignore[override]
            return self.buffer

    out = Captured()
    verdict = Verdict("drop", views="2/2", checks=[Check("views equal the truth", True, "2/2"),
                                                   Check("no node leaked", False, "1 left")])
    Report(out, verbose=True).verdict(verdict)
    text = out.buffer.getvalue()
    assert "ok     views equal the truth: 2/2" in text
    assert "FAILED no node leaked: 1 left" in text
    quiet = Captured()
    Report(quiet).verdict(verdict)
    assert "views equal the truth" not in quiet.buffer.getvalue()  # only failures by default
    assert "no node leaked" in quiet.buffer.getvalue()
