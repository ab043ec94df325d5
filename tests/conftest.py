"""Configuration shared by the whole test suite."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

try:
    import zkwarden  # noqa: F401
except ImportError:  # a plain checkout, not pip-installed: test the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def pytest_configure(config: pytest.Config) -> None:
    # When zkwarden is pip-installed, its pytest11 entry point has already registered the
    # fixtures plugin as "zkwarden"; register it here only when it has not (registering
    # the same module twice is an error).
    if not config.pluginmanager.has_plugin("zkwarden"):
        from zkwarden.testing import pytest_plugin

        config.pluginmanager.register(pytest_plugin, "zkwarden")
