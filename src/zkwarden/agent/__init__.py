"""``zkwarden agent``: a sidecar that registers local services and serves discovery.

It registers the services of a host or pod in ZooKeeper from a TOML file, keeps each
registration honest with a health check (HTTP, TCP or a command, with rise/fall
thresholds), answers discovery questions over local HTTP (with blocking queries and
server-sent events), exports Prometheus metrics, and keeps serving the last known view,
marked stale, while ZooKeeper is unreachable. See ``docs/agent.md``.

Entry points: :func:`main` (``argv`` → exit code) and :func:`run_agent` (a config path →
exit code, in a running event loop); :class:`Agent` runs one in-process.

Needs the ``agent`` extra (``pip install zkwarden[agent]``: aiohttp, prometheus_client).
"""

from __future__ import annotations

from .config import AgentConfig, CheckConfig, ServiceConfig, load_config, parse_config
from .daemon import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK, main, run_agent
from .runner import Agent

__all__ = (
    "Agent",
    "AgentConfig",
    "CheckConfig",
    "ServiceConfig",
    "load_config",
    "parse_config",
    "run_agent",
    "main",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_CONFIG",
)
