"""``zkwarden demo``: the incidents zkwarden exists for, replayed against a real ZooKeeper.

An embedded ZooKeeper (through :mod:`zkwarden.testing`) runs behind a
:class:`~zkwarden.testing.FaultProxy`; a fleet of instances is registered by several
clients and watched by several caches, all through the proxy; an observer connected
straight to the server reads the truth. Each incident is narrated, shown live, and judged
by invariants; the summary table ends the run, and the exit code is 10 when any
invariant failed. Everything (clients, sessions, nodes, the JVM, its files) is cleaned up,
also when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import time

from ...errors import ConfigurationError
from ..exitcodes import INTERRUPTED, INVARIANT_FAILED, OK
from ..output import Output
from ..session import Interrupt, Options, run_until_interrupted
from .fleet import NAME, DemoConfig, Fleet
from .incidents import INCIDENTS
from .report import Check, Report, Verdict

__all__ = ("cmd_demo", "run_demo", "DemoConfig")


async def _shutdown(fleet: Fleet) -> Verdict:
    verdict = Verdict("shutdown: close everything")
    began = time.monotonic()
    await fleet.close_fleet()
    closed_in = time.monotonic() - began
    deadline = time.monotonic() + 3.0
    nodes, sessions = await fleet.leftovers()
    while (nodes or sessions) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        nodes, sessions = await fleet.leftovers()
    verdict.leaked_nodes, verdict.leaked_sessions = nodes, sessions
    verdict.recover = closed_in
    workdir = os.path.dirname(fleet.server.log_path or "") or None
    await fleet.stop()
    files_left = workdir is not None and await asyncio.to_thread(os.path.exists, workdir)
    verdict.saw.append(f"closed {len(fleet.members)} clients in {closed_in * 1000:.0f} ms; "
                       f"{nodes} instance nodes and {sessions} sessions left on the server")
    verdict.checks += [
        Check("the registry is empty once everything is closed", nodes == 0,
              f"{nodes} nodes under the service"),
        Check("no session outlives its client", sessions == 0, f"{sessions} sessions left"),
        Check("the server stopped and its files are gone",
              not fleet.server.running and not files_left,
              "running" if fleet.server.running else ("files left" if files_left else "clean")),
    ]
    return verdict


async def run_demo(config: DemoConfig, out: Output) -> list[Verdict]:
    """Run the demo with ``config``; return every verdict (the last one: shutdown).

    Raises:
        ZooKeeperNotFoundError: Java or ZooKeeper is not installed.
        ServerStartError: the embedded server did not start.
    """
    report = Report(out, verbose=config.verbose)
    fleet = Fleet(config, report)
    verdicts: list[Verdict] = []
    try:
        began = time.monotonic()
        if not out.json_mode:
            out.line("zkwarden demo: the incidents zkwarden exists for, replayed against a "
                     "real ZooKeeper")
            out.line("    starting ZooKeeper, the fault proxy and the fleet …")
        await fleet.start()
        _, ready = await fleet.observe("starting", began, seconds=config.recover_limit,
                                       until=lambda s: s.recovered)
        report.progress.clear()
        if not ready:
            raise ConfigurationError("the fleet did not come up: see `zkwarden -v demo`")
        took = time.monotonic() - began
        header = [
            f"    ZooKeeper on {fleet.server.connect_string} (tick {config.tick_time:g} s), "
            f"clients reach it through a FaultProxy on {fleet.proxied}",
            f"    fleet: {config.instances} instances of {NAME!r} registered by "
            f"{config.clients} clients, watched by {config.caches} caches",
            f"    sessions: {config.session_timeout:g} s timeout (read timeout "
            f"{config.session_timeout * 2 / 3:.1f} s); reconnect backoff "
            f"0.1-{config.backoff_max:g} s with full jitter",
            f"    ready in {took:.1f} s: {config.caches}/{config.caches} caches see the "
            f"{config.instances} instances the server holds",
            "    the status line: \"clients connected N/M\" counts the registering and "
            "watching clients",
            "    with a live session (0 during an outage is expected), \"views=truth\" the "
            "caches whose",
            "    view equals the server's, \"registry\" the instances registered",
        ]
        report.header(header, {
            "server": fleet.server.connect_string, "proxy": fleet.proxied,
            "instances": config.instances, "clients": config.clients,
            "caches": config.caches, "session_timeout": config.session_timeout,
            "quick": config.quick, "ready_seconds": round(took, 2),
        })
        for number, incident in enumerate(INCIDENTS, 1):
            report.incident(number, len(INCIDENTS), incident.title(config),
                            incident.narration(config))
            verdict = await incident.run(fleet, report)
            verdicts.append(verdict)
            report.verdict(verdict)
        report.section("finally: close everything",
                       "Every registry, cache and client is closed: the registry must be "
                       "empty at once, no session may outlive its client, and the server and "
                       "its files must be gone.")
        final = await _shutdown(fleet)
        verdicts.append(final)
        report.verdict(final)
    finally:
        report.progress.clear()
        await fleet.stop()
    return verdicts


async def cmd_demo(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``demo [--quick] [--instances N] [--clients N] [--caches N]``."""
    for name in ("instances", "clients", "caches"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigurationError(f"--{name} must be >= 1")
    config = DemoConfig.make(quick=args.quick, instances=args.instances,
                             clients=args.clients, caches=args.caches)
    config = dataclasses.replace(config, verbose=opts.verbose > 0)
    if config.instances < config.clients:
        raise ConfigurationError("--instances must be at least --clients")
    began = time.monotonic()
    with Interrupt() as interrupt:
        verdicts = await run_until_interrupted(lambda: run_demo(config, out), interrupt)
    if verdicts is None:
        out.note("interrupted; everything was cleaned up")
        return INTERRUPTED
    Report(out, verbose=config.verbose).summary(verdicts, time.monotonic() - began)
    return OK if all(v.ok for v in verdicts) else INVARIANT_FAILED
