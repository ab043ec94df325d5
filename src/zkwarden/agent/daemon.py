"""The daemon: ``zkwarden agent -c agent.toml`` and ``python -m zkwarden.agent``.

:func:`run_agent` loads the config, runs an :class:`~zkwarden.agent.runner.Agent` and maps
signals to actions: SIGTERM/SIGINT stop it (bounded, exit code 0), SIGHUP reloads the
file. :func:`main` parses the command line around it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from ..errors import ConfigurationError
from .config import AgentConfig, load_config
from .logs import configure_logging, restore_logging
from .runner import Agent

__all__ = ("run_agent", "main", "EXIT_OK", "EXIT_FAILURE", "EXIT_CONFIG")

#: Exit codes of :func:`run_agent` / :func:`main`.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


async def run_agent(config_path: str) -> int:
    """Run the agent from the TOML file at ``config_path`` until SIGTERM/SIGINT.

    Returns the exit code: 0 after a clean stop, 2 for a bad config (one line on stderr
    naming the key), 1 when the agent cannot start (listen address in use...). Never
    raises for those.
    """
    try:
        config = load_config(config_path)
    except ConfigurationError as exc:
        print(f"zkwarden agent: {exc}".replace("\n", " "), file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log.level, config.log.format)
    try:
        return await _run(config, config_path)
    finally:
        restore_logging()


async def _run(config: AgentConfig, config_path: str) -> int:
    agent = Agent(config, config_path=config_path, manage_logging=True)
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    # Handlers first: a SIGTERM during start-up still means a clean stop.
    for sig, action in (
        (signal.SIGTERM, lambda: agent.request_stop("SIGTERM")),
        (signal.SIGINT, lambda: agent.request_stop("SIGINT")),
        (signal.SIGHUP, agent.request_reload),
    ):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, action)
            handled.append(sig)
    try:
        try:
            await agent.start()
        except OSError as exc:
            agent.events.error(
                "start_failed",
                f"cannot listen on {config.agent.listen_host}:{config.agent.listen_port}: "
                f"{exc.strerror or exc}",
            )
            return EXIT_FAILURE
        except ConfigurationError as exc:
            print(f"zkwarden agent: {exc}".replace("\n", " "), file=sys.stderr)
            return EXIT_CONFIG
        await agent.wait_stop_requested()
    finally:
        await agent.stop()
        for sig in handled:
            loop.remove_signal_handler(sig)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``zkwarden agent -c agent.toml [--check]``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="zkwarden agent",
        description="Register local services in ZooKeeper, health-check them, and serve "
        "discovery over local HTTP.",
    )
    parser.add_argument("-c", "--config", required=True, help="the agent's TOML config file")
    parser.add_argument(
        "--check", action="store_true", help="validate the config file and exit (0: valid)"
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_CONFIG
    if args.check:
        try:
            load_config(args.config)
        except ConfigurationError as exc:
            print(f"zkwarden agent: {exc}".replace("\n", " "), file=sys.stderr)
            return EXIT_CONFIG
        print(f"{args.config}: ok")
        return EXIT_OK
    try:
        return asyncio.run(run_agent(args.config))
    except KeyboardInterrupt:
        return EXIT_OK
