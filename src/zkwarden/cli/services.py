"""``zkwarden register`` and ``zkwarden discover``.

``register`` keeps one instance registered through reconnects and session expiry (the
registry's reconcile loop) until interrupted, then unregisters it. ``discover`` lists
service names or instances, or with ``--watch`` shows a live view: redrawn in place on a
terminal, one line per change otherwise (or one JSON object per change with --json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from typing import Any

from .._aio.client import AsyncClient
from ..discovery import (
    Added,
    CacheChange,
    Removed,
    Resynced,
    ServiceCache,
    ServiceDiscovery,
    ServiceInstance,
    ServiceRegistry,
    Updated,
)
from ..errors import ConfigurationError, ZooKeeperError
from ..types import ClientState, ClientStateChange, Stat
from .output import Output, clock, instance_to_dict
from .session import Interrupt, Options, connected, run_until_interrupted
from .watch import StateReporter, wait_connected

__all__ = ("cmd_register", "cmd_discover", "instance_from_args", "instances_table")


def _parse_pairs(items: Sequence[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigurationError(f"{what} takes KEY=VALUE, got {item!r}")
        result[key] = value
    return result


def instance_from_args(args: argparse.Namespace) -> ServiceInstance:
    """The instance ``register`` describes on its command line.

    Raises:
        ConfigurationError: bad --payload JSON, --meta item, or instance field.
    """
    payload: dict[str, Any] = {}
    if args.payload:
        try:
            loaded = json.loads(args.payload)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"--payload is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigurationError("--payload must be a JSON object, e.g. '{\"zone\": \"a\"}'")
        payload = loaded
    fields: dict[str, Any] = {
        "address": args.address,
        "port": args.port,
        "ssl_port": args.ssl_port,
        "payload": payload,
        "weight": args.weight,
        "zone": args.zone,
        "tags": tuple(args.tag or ()),
        "metadata": _parse_pairs(args.meta, "--meta"),
    }
    if args.id:
        fields["id"] = args.id
    if getattr(args, "format", None) == "rpcx":
        _check_rpcx_args(args, fields["metadata"])
    return ServiceInstance(args.name, **fields)


# rpcx keeps these in its metadata string; on the command line they have flags of their own.
_RPCX_META_FLAGS = {
    "weight": "--weight",
    "zone": "--zone",
    "group": "--tag (rpcx groups are tags)",
    "state": "no flag: register always registers an active instance",
}


def _check_rpcx_args(args: argparse.Namespace, metadata: dict[str, str]) -> None:
    """Refuse what rpcx cannot carry, naming the flag to use instead.

    Raises:
        ConfigurationError: a reserved --meta key, --payload or --ssl-port with rpcx.
    """
    for key in sorted(metadata):
        if key in _RPCX_META_FLAGS:
            raise ConfigurationError(
                f"--meta {key}=... is an rpcx field, not metadata: use {_RPCX_META_FLAGS[key]}"
            )
    for flag, value in (("--payload", args.payload), ("--ssl-port", args.ssl_port)):
        if value is not None:
            raise ConfigurationError(
                f"{flag} cannot be stored in the rpcx format (its nodes carry address, port "
                "and --meta/--weight/--zone/--tag only)"
            )


def _endpoint(inst: ServiceInstance) -> str:
    address = inst.address or "-"
    return f"{address}:{inst.port}" if inst.port is not None else address


def _extra(inst: ServiceInstance) -> str:
    parts: list[str] = []
    if not inst.enabled:
        parts.append("disabled")
    if inst.zone:
        parts.append(f"zone={inst.zone}")
    if inst.weight is not None:
        parts.append(f"weight={inst.weight}")
    if inst.tags:
        parts.append("tags=" + ",".join(inst.tags))
    if inst.payload:
        parts.append(json.dumps(inst.payload, separators=(",", ":"), sort_keys=True))
    if inst.metadata:
        parts.append(" ".join(f"{k}={v}" for k, v in sorted(inst.metadata.items())))
    text = " ".join(parts)
    return text if len(text) <= 60 else text[:59] + "…"


def instances_table(instances: Sequence[ServiceInstance]) -> list[str]:
    """Instances as an aligned text table (ID, ENDPOINT, DETAILS)."""
    rows = [("ID", "ENDPOINT", "DETAILS")]
    rows += [(i.id, _endpoint(i), _extra(i)) for i in instances]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]


# --- register ------------------------------------------------------------------------------


async def _announce_reregistrations(
    zk: AsyncClient, registry: ServiceRegistry, inst: ServiceInstance, out: Output
) -> None:
    """After each new session, say when the registration is back (or that it is pending)."""
    new_session = asyncio.Event()

    def on_change(change: ClientStateChange) -> None:
        if change.state is ClientState.CONNECTED and change.new_session:
            new_session.set()

    zk.add_listener(on_change)
    try:
        while True:
            await new_session.wait()
            new_session.clear()
            started = time.monotonic()
            while True:
                await wait_connected(zk)
                node = registry.node_path(inst)
                stat = await _exists_quietly(zk, node)
                if stat is not None and stat.ephemeral_owner in (0, zk.session_id):
                    took = time.monotonic() - started
                    if out.json_mode:
                        out.json({"time": time.time(), "event": "registered", "path": node,
                                  "session": f"0x{zk.session_id or 0:x}"}, stream=True)
                    else:
                        out.line(f"-- {clock()} registered again at {node} "
                                 f"({took:.2f}s after the new session)")
                    break
                await asyncio.sleep(0.1)
    finally:
        zk.remove_listener(on_change)


async def _exists_quietly(zk: AsyncClient, path: str | None) -> Stat | None:
    if path is None:
        return None
    try:
        return await zk.exists(path)
    except ZooKeeperError:  # connection trouble: the caller tries again
        return None


async def cmd_register(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``register NAME --address A --port P [--format F] [--payload JSON] …``: register
    and keep the registration alive until interrupted, then unregister."""
    inst = instance_from_args(args)
    async with connected(opts) as zk:
        registry = ServiceRegistry(zk, base_path=args.base_path, format=args.format)
        reporter = StateReporter(
            out, zk,
            after_resume="; registration kept (same session, node untouched)",
            after_new="; registering again",
        )
        zk.add_listener(reporter)
        try:
            await registry.register(inst)
            node = registry.node_path(inst)
            # What readers of the format will see: rpcx and Dubbo derive the id from the
            # address (the one `discover` shows), not the one given here.
            shown = registry.format.canonical(inst)
            if out.json_mode:
                out.json({"time": time.time(), "event": "registered", "path": node,
                          "session": f"0x{zk.session_id or 0:x}",
                          "instance": instance_to_dict(shown)}, stream=True)
            else:
                out.line(f"registered {shown.name}/{shown.id} at {node} ({registry.format.name})")
                if args.duration is None:
                    out.note("keeping it registered through faults; Ctrl-C to unregister")
            with Interrupt() as interrupt:
                await run_until_interrupted(
                    lambda: _announce_reregistrations(zk, registry, inst, out),
                    interrupt, duration=args.duration,
                )
        finally:
            zk.remove_listener(reporter)
            await registry.close()
        if out.json_mode:
            out.json({"time": time.time(), "event": "unregistered", "path": node}, stream=True)
        else:
            out.line(f"unregistered {shown.name}/{shown.id}")
    return 0


# --- discover ------------------------------------------------------------------------------


class LiveView:
    """The ``discover --watch`` display of one cache."""

    def __init__(self, out: Output, zk: AsyncClient, name: str) -> None:
        self._out = out
        self._zk = zk
        self._name = name
        self._drawn = 0
        self._tty = out.is_tty and not out.json_mode
        self._first = True

    @property
    def redraws(self) -> bool:
        """True when the view is redrawn in place (a terminal)."""
        return self._tty

    def draw(self, cache: ServiceCache) -> None:
        """Redraw the whole view in place (terminal only)."""
        instances = cache.instances()
        state = "live" if not cache.stale else f"STALE ({self._zk.state.value.lower()})"
        header = (f"{self._name}: {len(instances)} instance{'s' if len(instances) != 1 else ''}"
                  f"  [{state}, {clock()}]  Ctrl-C to quit")
        lines = [header, *instances_table(instances)]
        stdout = self._out.stdout
        if self._drawn:
            stdout.write(f"\x1b[{self._drawn}A\r\x1b[J")
        stdout.write("\n".join(lines) + "\n")
        stdout.flush()
        self._drawn = len(lines)

    def report(self, change: CacheChange) -> None:
        """One line (or JSON object) per change (not a terminal)."""
        out = self._out
        if out.json_mode:
            doc: dict[str, Any] = {"time": time.time()}
            if isinstance(change, Resynced):
                doc.update(change="resynced", stale=change.stale,
                           instances=[instance_to_dict(i) for i in change.instances])
            elif isinstance(change, Added):
                doc.update(change="added", instance=instance_to_dict(change.instance))
            elif isinstance(change, Removed):
                doc.update(change="removed", instance=instance_to_dict(change.instance))
            else:
                doc.update(change="updated", old=instance_to_dict(change.old),
                           instance=instance_to_dict(change.new))
            out.json(doc, stream=True)
            return
        if isinstance(change, Resynced):
            if self._first:
                out.line(f"{self._name}: {len(change.instances)} instances")
                out.lines(instances_table(change.instances))
            else:
                stale = " (stale)" if change.stale else ""
                out.line(f"= {clock()} resynced: {len(change.instances)} instances{stale}")
            self._first = False
        elif isinstance(change, Added):
            i = change.instance
            out.line(f"+ {clock()} {i.id}  {_endpoint(i)}  {_extra(i)}".rstrip())
        elif isinstance(change, Removed):
            out.line(f"- {clock()} {change.instance.id}  {_endpoint(change.instance)}")
        elif isinstance(change, Updated):
            i = change.new
            out.line(f"~ {clock()} {i.id}  {_endpoint(i)}  {_extra(i)}".rstrip())


async def _live(cache: ServiceCache, view: LiveView) -> None:
    pending: list[CacheChange] = []
    arrived = asyncio.Event()

    async def consume() -> None:
        try:
            async for change in cache.changes():
                pending.append(change)
                arrived.set()
        finally:
            arrived.set()  # an ended stream must wake the loop below, which reports it

    # Owned by this call: cancelled and awaited in the finally below, its error re-raised.
    consumer = asyncio.ensure_future(consume())
    try:
        while True:
            try:
                async with asyncio.timeout(1.0 if view.redraws else None):
                    await arrived.wait()
            except TimeoutError:
                pass  # redraw anyway: the clock and the live/stale mark move on
            arrived.clear()
            ended = consumer.done()  # before taking the batch: it holds the last changes
            batch, pending[:] = list(pending), []
            if view.redraws:
                view.draw(cache)
            else:
                for change in batch:
                    view.report(change)
            if ended:
                consumer.result()  # raises the stream's ending error
                return
            if view.redraws:
                await asyncio.sleep(0.1)  # coalesce bursts into one redraw
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)


async def cmd_discover(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``discover [NAME] [--watch]``: service names, the instances of NAME, or a live view."""
    async with connected(opts) as zk:
        disc = ServiceDiscovery(zk, base_path=args.base_path, format=args.format)
        try:
            if args.name is None:
                names = await disc.names()
                if out.json_mode:
                    out.json({"services": names})
                else:
                    out.lines(names)
                return 0
            if not args.watch:
                instances = await disc.instances(args.name)
                if out.json_mode:
                    out.json({"name": args.name,
                              "instances": [instance_to_dict(i) for i in instances]})
                else:
                    out.lines(instances_table(instances))
                return 0
            cache = await disc.cache(args.name)
            view = LiveView(out, zk, args.name)
            reporter: StateReporter | None = None
            if not view.redraws:
                reporter = StateReporter(out, zk, after_resume="; view re-read",
                                         after_new="; view re-read")
                zk.add_listener(reporter)
            try:
                with Interrupt() as interrupt:
                    await run_until_interrupted(
                        lambda: _live(cache, view), interrupt, duration=args.duration
                    )
            finally:
                if reporter is not None:
                    zk.remove_listener(reporter)
            return 0
        finally:
            await disc.close()
