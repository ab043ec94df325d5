"""Fixtures for the Java interop tests."""

from __future__ import annotations

import pytest

from .curator import CuratorTool, build_tool


@pytest.fixture(scope="session")
def curator_tool() -> CuratorTool:
    """CuratorTool.java compiled (once, cached on disk) and ready to run.

    Raises:
        CuratorNotFoundError: Java, javac or the Curator jars are missing.
    """
    return build_tool()
