"""Fixtures for the Java interop tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zkwarden.testing import ZooKeeperServer

from .curator import CuratorTool, build_tool


@pytest.fixture(scope="session")
def curator_tool() -> CuratorTool:
    """CuratorTool.java compiled (once, cached on disk) and ready to run.

    Raises:
        CuratorNotFoundError: Java, javac or the Curator jars are missing.
    """
    return build_tool()


@pytest.fixture(scope="module")
def zk_server() -> Iterator[ZooKeeperServer]:
    """Overrides the plugin's shared server for the interop tests: a JVM running Curator
    starts beside it, and on a loaded 2-core machine the default 2 s maximum session (read
    timeout 1.3 s) is shorter than the stalls that causes. 10 s grants what clients ask for.
    """
    with ZooKeeperServer(max_session_timeout=10.0) as server:
        yield server
