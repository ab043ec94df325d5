"""The ``zkwarden`` command: a ZooKeeper shell, register/discover, a local server, a demo.

``main(argv)`` runs it and returns the exit code; the console script ``zkwarden`` and
``python -m zkwarden`` call it. The exit codes are in :mod:`zkwarden.cli.exitcodes` (and
at the end of ``zkwarden --help``).
"""

from __future__ import annotations

from .app import build_parser, main
from .exitcodes import EXIT_CODES

__all__ = ("main", "build_parser", "EXIT_CODES")
