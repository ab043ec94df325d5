"""Helpers for the CLI tests: results of in-process runs, and ``python -m zkwarden``
subprocesses whose merged output is read line by line with bounded waits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


@dataclass
class Result:
    """What one in-process run printed, and its exit code."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def assert_one_line_error(self, code: int) -> str:
        assert self.code == code, (self.code, self.out, self.err)
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, self.err
        assert "Traceback" not in self.err
        return lines[0]


Cli = Callable[..., Result]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("ZOOKEEPER_HOSTS", None)
    env.update(extra)
    return env


def run_module(*argv: str, timeout: float = 30.0, stdin: bytes | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """``python -m zkwarden ARGV`` to completion (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "zkwarden", *argv], input=stdin, capture_output=True,
        timeout=timeout, env=env or subprocess_env(), cwd=REPO,
    )


class Proc:
    """A running ``python -m zkwarden`` whose stdout+stderr lines are collected."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "zkwarden", *argv], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, env=env or subprocess_env(), cwd=REPO,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._seen = 0
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> str:
        """The next line (after the last one matched) matching ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(self._seen, len(self.lines)):
                    if regex.search(self.lines[i]):
                        self._seen = i + 1
                        return self.lines[i]
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    why = "the process ended" if self._eof else f"{timeout}s passed"
                    raise AssertionError(
                        f"no line matching {pattern!r} ({why}); output:\n" + "\n".join(self.lines)
                    )
                self._cond.wait(min(remaining, 0.5))

    def interrupt(self, timeout: float = 15.0) -> int:
        """Send SIGINT and wait for the exit code (all output collected)."""
        self.popen.send_signal(signal.SIGINT)
        return self.finish(timeout)

    def finish(self, timeout: float = 15.0) -> int:
        """Wait for the exit code (all output collected)."""
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            raise
        self._pump.join(5.0)
        return code

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)
