"""Every fenced code block of README.md runs as written.

The project promise: a user on a fresh machine can copy any block of the README and it
works.  Each block is one test (``<index>-<language>-<first line>``), so a failure names
the block.  How a block runs depends on its language:

``python``  run as a program of its own (a subprocess, in a temporary directory), with
            the connect string the README uses, ``127.0.0.1:2181`` (the address of
            ``zkwarden server``), replaced by the test server's, in the test only.
``sh``      run by ``bash -eu`` (a failing line fails the block) with ``zkwarden``
            meaning ``python -m zkwarden`` of this checkout and ``ZOOKEEPER_HOSTS`` set to
            the test server (the default, 127.0.0.1:2181, substituted the same way).
``toml``    an agent configuration: read and validated by ``zkwarden agent``'s loader.
``text``    output shown to the reader: nothing to run, so no test.

A block may say how it is tested with an HTML comment on a line before its fence:

``<!-- readme-test: skip: REASON -->``     not run, for the stated reason (``make`` and
                                           ``pip install``: they are what runs this suite)
``<!-- readme-test: continue -->``         a fragment continuing the previous python
                                           block: run after it, in the same program
``<!-- readme-test: until-interrupted -->`` each line is a command that runs until Ctrl-C:
                                           each must still be running after a few
                                           seconds, then exit 0 on SIGINT

The Security section's blocks name production things (``zk1:2181``, ``/run/secrets/zk``, a
keytab, certificates).  A marker says what to build for real so they run as written
(tests/readme/security.py reads the names from the block; only connect strings and
absolute paths are replaced, in the test):

``<!-- readme-test: sasl-digest -->``      a server with the block's DIGEST-MD5 user, its
                                           password in the block's password file
``<!-- readme-test: kerberos -->``         an MIT KDC of the block's realm with its principal
                                           and keytab, a server that is ``zookeeper/<server_name>``
``<!-- readme-test: tls-client-cert -->``  a CA and a client certificate with the block's DN,
                                           a server with ``ssl.clientAuth=need``
``<!-- readme-test: secret-files -->``     (toml) the files it names made, then loaded by the
                                           agent's loader, which must keep them and refuse
                                           what the block's comments say it refuses
Each such python block must print the identity it authenticated as (``whoami()``).

Before each block the test server is wiped (everything but ``/zookeeper``), as a fresh
server would be, so blocks do not depend on the order they run in. Every python and sh
block then runs twice in a row, without a wipe in between: a reader runs an example again
(after an edit, or to see it once more), and it must work against what its first run left.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from readme import security

from zkwarden import Client
from zkwarden.testing import ZooKeeperServer

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

#: The connect string the README's examples use (``zkwarden server``'s default).
README_HOSTS = "127.0.0.1:2181"

RUNNABLE = {"python", "sh"}
KNOWN = RUNNABLE | {"toml", "text"}
#: Markers besides ``skip: REASON``, with the language of the blocks they may mark.
MARKERS = {"continue": "python", "until-interrupted": "sh", "secret-files": "toml",
           **{name: "python" for name in security.SERVERS}}

PYTHON_TIMEOUT = 90.0  # a block that starts its own ZooKeeper JVM on a loaded machine
SHELL_TIMEOUT = 90.0
RUNS_AT_LEAST = 4.0  # an until-interrupted command must still be running after this
EXIT_TIMEOUT = 30.0  # ... and exit within this after SIGINT
RUNS = 2  # each block, back to back on the same server: an example must survive a rerun

_MARKER = re.compile(r"<!--\s*readme-test:\s*(?P<body>.*?)\s*-->")
# Lines a test must never run: they install things or run this very suite.
_FORBIDDEN = re.compile(r"^\s*(make|pip|pip3|sudo|apt|apt-get)\b")


@dataclass(frozen=True)
class Block:
    index: int
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    markers: tuple[str, ...]

    @property
    def first_line(self) -> str:
        return next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")

    @property
    def test_id(self) -> str:
        slug = re.sub(r"[^A-Za-z0-9]+", "-", self.first_line).strip("-")[:40]
        return f"{self.index:02d}-{self.lang}-{slug}"

    def skip_reason(self) -> str | None:
        for marker in self.markers:
            if marker.startswith("skip"):
                return marker.partition(":")[2].strip()
        return None


def parse_readme(text: str) -> list[Block]:
    """The fenced blocks of ``text``, each with the readme-test markers above it.

    Raises:
        AssertionError: an unclosed fence.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = re.match(r"^(`{3,})(.*)$", lines[i])
        if not opening:
            i += 1
            continue
        fence, lang = opening.group(1), opening.group(2).strip()
        start = i
        markers: list[str] = []
        j = i - 1
        while j >= 0 and (not lines[j].strip() or _MARKER.search(lines[j])):
            if (found := _MARKER.search(lines[j])) is not None:
                markers.insert(0, found.group("body"))
            j -= 1
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != fence:
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"README.md:{start + 1}: the fence opened here is never closed"
        i += 1
        blocks.append(Block(len(blocks), start + 1, lang, "\n".join(body) + "\n", tuple(markers)))
    return blocks


BLOCKS = parse_readme(README.read_text(encoding="utf-8"))
TESTED = [b for b in BLOCKS if b.lang != "text"]


def test_every_block_says_what_it_is() -> None:
    """A block without a language (or one this test does not know) would silently go
    untested: each must be one of the languages above, ``text`` for output."""
    assert BLOCKS, "no fenced block found in README.md"
    unknown = [f"README.md:{b.line}: {b.lang or '(none)'}" for b in BLOCKS if b.lang not in KNOWN]
    assert not unknown, f"blocks of unknown language (use one of {sorted(KNOWN)}): {unknown}"
    for b in BLOCKS:
        reason = b.skip_reason()
        assert reason is None or reason, f"README.md:{b.line}: a skip must say why"
        if "continue" in b.markers:
            assert b.lang == "python" and b.index > 0, f"README.md:{b.line}: nothing to continue"
        for marker in b.markers:
            if not marker.startswith("skip"):
                assert marker in MARKERS, f"README.md:{b.line}: unknown marker {marker!r}"
                assert b.lang == MARKERS[marker], f"README.md:{b.line}: {marker} on {b.lang}"


def test_parser_reads_markers_and_fences() -> None:
    """The parser this file relies on: fences, languages, markers above a fence."""
    sample = (
        "intro\n<!-- readme-test: skip: needs a 3-node ensemble -->\n\n```python\nx = 1\n```\n"
        "```text\nout\n```\n<!-- readme-test: continue -->\n```python\ny = x\n```\n"
    )
    a, b, c = parse_readme(sample)
    assert (a.lang, a.text, a.skip_reason()) == ("python", "x = 1\n", "needs a 3-node ensemble")
    assert (b.lang, b.markers) == ("text", ())
    assert (c.markers, c.skip_reason(), c.line) == (("continue",), None, 11)


# -- running -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def readme_server() -> Iterator[ZooKeeperServer]:
    server = ZooKeeperServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wipe(hosts: str) -> None:
    """Delete everything a previous block left (ZooKeeper's own /zookeeper stays)."""
    with Client(hosts, session_timeout=10.0) as zk:
        for child in zk.get_children("/", timeout=15.0):
            if child != "zookeeper":
                zk.delete(f"/{child}", recursive=True, timeout=15.0)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ZOOKEEPER_HOSTS"}
    # zkwarden of this checkout, whether or not it is pip-installed.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return env


def _program(block: Block) -> str:
    """The python program of ``block``: itself, after the blocks it continues."""
    parts = [block.text]
    current = block
    while "continue" in current.markers:
        current = BLOCKS[current.index - 1]
        parts.insert(0, current.text)
    return "\n".join(parts)


def _report(what: str, proc: subprocess.CompletedProcess[str]) -> str:
    return f"{what} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _run_python(
    block: Block, replacements: dict[str, str], cwd: Path, env: dict[str, str] | None = None
) -> str:
    """Run the block with the README's strings replaced by the test's; its stdout."""
    program = _program(block)
    for old, new in replacements.items():
        program = program.replace(old, new)
    script = cwd / f"readme_block_{block.index}.py"
    script.write_text(program, encoding="utf-8")
    try:
        proc = subprocess.run(
            [sys.executable, str(script)], cwd=cwd, env={**_env(), **(env or {})},
            capture_output=True, text=True, timeout=PYTHON_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README.md:{block.line}: still running after {exc.timeout} s")
    assert proc.returncode == 0, f"README.md:{block.line}: " + _report("the block", proc)
    return proc.stdout


def _run_secured(block: Block, mode: str, cwd: Path) -> None:
    """Run ``block`` against the server its marker ``mode`` builds (tests/readme)."""
    with security.SERVERS[mode](block.text, cwd) as setup:
        # Each is a name the block says (read from it): the server it reaches is the test's.
        assert all(old in block.text for old in setup.replacements), setup.replacements
        for _ in range(RUNS):
            out = _run_python(block, setup.replacements, cwd, setup.env)
            for identity in setup.expect:
                assert identity in out, f"README.md:{block.line}: no {identity} in\n{out}"


def _commands(block: Block) -> list[str]:
    return [ln for ln in block.text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _check_safe(block: Block) -> None:
    for line in _commands(block):
        assert not _FORBIDDEN.match(line), (
            f"README.md:{block.line}: `{line.strip()}` installs things or runs the test suite:"
            " mark the block <!-- readme-test: skip: REASON -->"
        )


def _shell_env(hosts: str) -> dict[str, str]:
    env = _env()
    env["ZOOKEEPER_HOSTS"] = hosts
    return env


def _run_shell(block: Block, hosts: str, cwd: Path) -> None:
    # The README's port (in a connect string, a tcpdump filter, decode --port) is the test
    # server's: a capture of every port would also take the rest of a parallel test run.
    port = hosts.rsplit(":", 1)[1]
    script = (
        f'zkwarden() {{ {shlex.quote(sys.executable)} -m zkwarden "$@"; }}\n'
        + block.text.replace(README_HOSTS, hosts).replace("2181", port)
    )
    try:
        proc = subprocess.run(
            ["bash", "-eu", "-o", "pipefail", "-c", script], cwd=cwd, env=_shell_env(hosts),
            capture_output=True, text=True, timeout=SHELL_TIMEOUT, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README.md:{block.line}: still running after {exc.timeout} s")
    assert proc.returncode == 0, f"README.md:{block.line}: " + _report("the block", proc)


def _run_until_interrupted(block: Block, hosts: str, cwd: Path) -> None:
    for line in _commands(block):
        argv = shlex.split(line.replace(README_HOSTS, hosts), comments=True)
        assert argv[0] == "zkwarden", f"README.md:{block.line}: not a zkwarden command: {line}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "zkwarden", *argv[1:]], cwd=cwd, env=_shell_env(hosts),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + RUNS_AT_LEAST
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            ended_early = proc.poll() is not None
            if not ended_early:
                os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
            out, err = proc.communicate(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"README.md:{block.line}: `{line.strip()}` ignored Ctrl-C")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        assert not ended_early, (
            f"README.md:{block.line}: `{line.strip()}` should run until Ctrl-C; "
            + _report("it", done)
        )
        assert proc.returncode == 0, (
            f"README.md:{block.line}: `{line.strip()}` after Ctrl-C: " + _report("it", done)
        )


def _check_toml(block: Block, cwd: Path) -> None:
    from zkwarden.agent.config import load_config

    path = cwd / "agent.toml"
    path.write_text(block.text, encoding="utf-8")
    config = load_config(str(path))  # raises ConfigurationError naming the bad key
    assert config.services, f"README.md:{block.line}: the example defines no service"


@pytest.mark.timeout(240)  # above each block's own bound, so that one reports the hang
@pytest.mark.parametrize("block", TESTED, ids=[b.test_id for b in TESTED])
def test_readme_block_runs_as_written(
    block: Block, readme_server: ZooKeeperServer, tmp_path: Path
) -> None:
    reason = block.skip_reason()
    if reason:
        pytest.skip(f"README.md:{block.line}: {reason}")
    if "secret-files" in block.markers:
        security.check_secret_files(block.text, tmp_path)
        return
    if block.lang == "toml":
        _check_toml(block, tmp_path)
        return
    mode = next((m for m in block.markers if m in security.SERVERS), None)
    if mode is not None:
        _run_secured(block, mode, tmp_path)
        return
    hosts = readme_server.connect_string
    _wipe(hosts)
    if block.lang == "python":
        for _ in range(RUNS):
            _run_python(block, {README_HOSTS: hosts}, tmp_path)
        return
    _check_safe(block)
    for _ in range(RUNS):
        if "until-interrupted" in block.markers:
            _run_until_interrupted(block, hosts, tmp_path)
        else:
            _run_shell(block, hosts, tmp_path)
