"""Fixtures of the CLI tests (helpers in ``_support``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from zkwarden import Client
from zkwarden.cli import main

from ._support import Cli, Proc, Result


@pytest.fixture
def cli(zk_hosts: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    """``cli("ls", "/")``: run the command in-process against the shared server."""

    def run(*argv: str, hosts: str | None = zk_hosts) -> Result:
        capsys.readouterr()
        args = ["--hosts", hosts, *argv] if hosts is not None else list(argv)
        code = main(args)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def zk(zk_hosts: str) -> Iterator[Client]:
    """A blocking client on the shared server, to set things up and check the truth."""
    with Client(zk_hosts, session_timeout=2.0) as client:
        yield client


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    """Start ``python -m zkwarden`` subprocesses; any still running is killed afterwards."""
    procs: list[Proc] = []

    def start(*argv: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(list(argv), env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
