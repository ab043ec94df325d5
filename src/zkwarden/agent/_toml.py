"""Typed access to a parsed TOML table for the agent's config, with errors naming the key.

``${NAME}`` in the values read with ``env=True`` is replaced by the environment variable
``NAME`` (``$${`` keeps a literal ``${``): a container passes the pod IP or credentials from
a Secret that way without templating the file. An unset variable is an error naming the key.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError

__all__ = ("Reader", "parse_duration", "show", "MISSING")

MISSING: Any = object()
_MISSING = MISSING
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)\s*")
_ENV = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

class Reader:
    """Typed access to one TOML table, with errors naming ``source: key.path``."""

    def __init__(self, source: str, table: Mapping[str, Any], where: str) -> None:
        self.source = source
        self.table = table
        self.where = where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, message: str) -> ConfigurationError:
        return ConfigurationError(f"{self.source}: {self.key(name)}: {message}")

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self.used.add(name)
        if name in self.table:
            return self.table[name]
        if default is _MISSING:
            raise self.fail(name, "is required")
        return default

    def text(
        self, name: str, default: Any = _MISSING, *, empty: bool = False, env: bool = False
    ) -> Any:
        value = self.raw(name, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {show(value)}")
        if env:
            value = self.expand(name, value)
        if not empty and not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def expand(self, name: str, value: str) -> str:
        """``value`` with ``${NAME}`` replaced from the environment.

        Raises:
            ConfigurationError: a variable it uses is not set.
        """

        def one(match: re.Match[str]) -> str:
            var = match.group(1)
            if var is None:
                return "${"
            found = os.environ.get(var)
            if found is None:
                raise self.fail(name, f"uses ${{{var}}}, which is not set in the environment")
            return found

        return _ENV.sub(one, value)

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {show(value)}")
        return value

    def integer(self, name: str, default: Any, *, low: int, high: int | None = None) -> Any:
        value = self.raw(name, default)
        if value is default and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an integer, got {show(value)}")
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"in {low}..{high}"
            raise self.fail(name, f"must be {bounds}, got {value}")
        return value

    def duration(self, name: str, default: Any) -> Any:
        value = self.raw(name, default)
        if value is default and default is None:
            return None
        try:
            return parse_duration(value)
        except ValueError:
            raise self.fail(
                name, f'must be a duration > 0 like "10s" or "250ms", got {show(value)}'
            ) from None

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.raw(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(name, f"must be a list of non-empty strings, got {show(value)}")
        return tuple(value)

    def sub(self, name: str) -> Reader:
        """The table ``name`` (an empty one when absent)."""
        value = self.raw(name, {})
        if not isinstance(value, dict):
            raise self.fail(name, f"must be a table, got {show(value)}")
        return Reader(self.source, value, self.key(name))

    def done(self) -> None:
        for name in self.table:
            if name not in self.used:
                raise self.fail(name, "unknown key")


def show(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 60 else text[:57] + "..."


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a string like ``"250ms"``, ``"10s"``, ``"2m"``.

    Raises:
        ValueError: not a finite duration greater than zero.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if match is None:
            raise ValueError(value)
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    else:
        raise ValueError(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(value)
    return seconds
