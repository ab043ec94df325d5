"""``python -m zkwarden.agent -c agent.toml``: the same as ``zkwarden agent -c agent.toml``."""

from __future__ import annotations

import sys

from .daemon import main

if __name__ == "__main__":
    sys.exit(main())
