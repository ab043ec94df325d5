"""Scale, parts 2 and 3: N watches on one client, and N children under one node.

Watches (one-shot data watches, ``watch(path, "data")``, and persistent ones,
``add_watch(path, recursive=False)``), on the N children of one node, held by a fresh
client that talks to the server through a :class:`zkwarden.testing.FaultProxy`:

* arming all N (wall time, and the client loop thread's CPU per watch);
* memory: RSS growth of a child process arming N (:mod:`bench.scale_probe`);
* reconnect: ``proxy.reset()`` drops the connection; measured until the client reports
  CONNECTED, which it does once the server has answered every SetWatches batch (so every
  watch is restored; the server's ``wchs`` total is checked too, when it answers it).
  The server's own time for the same work is a raw socket doing what the client must:
  connect through the same proxy, handshake, send the same SetWatches batches (under
  128 KiB of paths each) and read every reply;
* ``aclose()`` of one stream among N (client CPU per call, 200 streams sampled);
* ``close()`` of the client holding N watches.

Children: ``get_children`` and ``get_all_children_number`` of the node with N children,
the raw socket's ``getChildren`` (the bound), and a children watch stream: the time from
a child's create until the stream yields the event (with the re-read children).
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

from ._common import SESSION_TIMEOUT, LoopThread
from .clients import create_many
from .raw import RawClient
from .scale_base import Ctx, loop_native_id, run_child, server_watch_total, thread_cpu
from .scale_probe import WARM, arm, child_path

PARENT = "/bench-scale-children"
ACLOSE_SAMPLE = 200

_LONG = struct.Struct(">q")
_INT = struct.Struct(">i")
_SET_WATCHES, _SET_WATCHES2, _XID_SET_WATCHES = 101, 105, -8
_SET_WATCHES_MAX = 128 * 1024  # the Java client's SET_WATCHES_MAX_LENGTH (paths' bytes)


class Children:
    """The N children of :data:`PARENT`, grown size by size (also the watched nodes)."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.count = 0
        ctx.loop.run(create_many(ctx.zk, [PARENT, WARM], b""))
        ctx.loop.run(create_many(ctx.zk, [f"{WARM}/w{i:02d}" for i in range(20)], b"w"))

    def grow(self, n: int) -> None:
        if n > self.count:
            paths = [child_path(PARENT, i) for i in range(self.count, n)]
            self.ctx.loop.run(create_many(self.ctx.zk, paths, b"x" * 16))
            self.count = n

    def drop(self) -> None:
        for path in (PARENT, WARM):
            self.ctx.loop.run(self.ctx.zk.delete(path, recursive=True))


# --- the server's bound: a raw SetWatches ---------------------------------------------------


def _ustring(text: str) -> bytes:
    raw = text.encode()
    return _INT.pack(len(raw)) + raw


def _vector(items: list[bytes]) -> bytes:
    return _INT.pack(len(items)) + b"".join(items)


class RawWatches(RawClient):
    """The raw socket, plus what a reconnect sends: SetWatches (one-shot data watches) or
    SetWatches2 (persistent ones), in batches under 128 KiB of paths."""

    def last_zxid(self) -> int:
        self.sock.sendall(self.get_data_frame("/"))
        (payload,) = self._read_frames(1)
        return int(_LONG.unpack_from(payload, 4)[0])

    def set_watches_frames(self, paths: list[str], kind: str, zxid: int) -> list[bytes]:
        frames: list[bytes] = []
        batch: list[bytes] = []
        size = 0
        for p in paths + [""]:
            item = _ustring(p) if p else b""
            if batch and (not p or size + len(item) > _SET_WATCHES_MAX):
                empty = _vector([])
                if kind == "data":  # data, exist, child
                    body = _LONG.pack(zxid) + _vector(batch) + empty + empty
                    opcode = _SET_WATCHES
                else:  # data, exist, child, persistent, persistent recursive
                    body = _LONG.pack(zxid) + empty * 3 + _vector(batch) + empty
                    opcode = _SET_WATCHES2
                frames.append(struct.pack(">iii", 8 + len(body), _XID_SET_WATCHES, opcode)
                              + body)
                batch, size = [], 0
            if p:
                batch.append(item)
                size += len(item)
        return frames

    def send_set_watches(self, frames: list[bytes]) -> None:
        self.sock.sendall(b"".join(frames))
        for payload in self._read_frames(len(frames)):
            xid, _, err = struct.unpack_from(">iqi", payload, 0)
            if xid != _XID_SET_WATCHES or err:
                raise RuntimeError(f"SetWatches reply xid {xid} err {err}")


def raw_restore(host: str, port: int, paths: list[str], kind: str) -> float:
    """Seconds for connect + handshake + every SetWatches batch answered (the bound)."""
    probe = RawWatches(host, port, SESSION_TIMEOUT)
    try:
        # Relative to the server's current zxid, so no watch fires: nothing changed.
        frames = probe.set_watches_frames(paths, kind, probe.last_zxid())
    finally:
        probe.close()
    t0 = time.perf_counter()
    raw = RawWatches(host, port, SESSION_TIMEOUT)
    try:
        raw.send_set_watches(frames)
        return time.perf_counter() - t0
    finally:
        raw.close()


# --- N watches on one client ------------------------------------------------------------------


def run_watches(ctx: Ctx, children: Children, n: int, kind: str) -> None:
    from zkwarden import AsyncClient, ClientState
    from zkwarden.retry import Backoff
    from zkwarden.testing import FaultProxy

    children.grow(n)
    curves = ctx.curves
    label = "one-shot data" if kind == "data" else "persistent"
    t_arm = curves.total(f"{kind}_arm", f"{label} watches: arm all N", "ms")
    c_arm = curves.per_item(f"{kind}_arm_cpu", f"{label} watches: arming CPU per watch", "µs")
    t_rec = curves.total(f"{kind}_reconnect", f"{label} watches: reconnect to CONNECTED", "ms")
    c_rec = curves.per_item(f"{kind}_reconnect_cpu",
                            f"{label} watches: reconnect CPU per watch", "µs")
    t_raw = curves.total(f"{kind}_raw_restore",
                         f"{label} watches: raw handshake + SetWatches (server bound)", "ms")
    ratio = curves.per_item(f"{kind}_reconnect_ratio",
                            f"{label} watches: reconnect / server bound", "x")
    c_aclose = curves.per_item(f"{kind}_aclose_cpu",
                               f"{label} watches: aclose() of one stream, CPU", "µs")
    t_close = curves.total(f"{kind}_close", f"{label} watches: client close() with N", "ms")
    paths = [child_path(PARENT, i) for i in range(n)]

    proxy = FaultProxy(ctx.hosts).start()
    loop = LoopThread(f"scale-{kind}")
    tid = loop_native_id(loop)
    marks: list[tuple[Any, float]] = []
    connected = asyncio.Event()

    def listener(change: Any) -> None:
        marks.append((change.state, time.monotonic()))
        if change.state is ClientState.CONNECTED:
            connected.set()

    async def make() -> Any:
        # Backoff only matters from the second attempt on (the first retry after a
        # connection that stayed up is immediate); small, so a retry costs no time either.
        zk = AsyncClient(proxy.connect_string, session_timeout=SESSION_TIMEOUT,
                         track_ensemble=False, backoff=Backoff(0.001, 0.01))
        await zk.start()
        zk.add_listener(listener)
        return zk

    try:
        zk = loop.run(make())
        cpu0 = thread_cpu(tid)
        t0 = time.perf_counter()
        streams = loop.run(arm(zk, paths, kind))
        t_arm.add(n, (time.perf_counter() - t0) * 1e3)
        c_arm.add(n, (thread_cpu(tid) - cpu0) / n * 1e6)
        ctx.log(f"  {label}: armed {n} in {t_arm.value(n):.1f} ms "
                f"({c_arm.value(n):.1f} µs CPU/watch)")
        before = server_watch_total(ctx.host, ctx.port)

        async def wait_connected() -> None:
            async with asyncio.timeout(120):
                await connected.wait()

        for r in range(ctx.rounds):
            loop.run(_clear(connected))
            cpu0 = thread_cpu(tid)
            t0 = time.monotonic()
            proxy.reset()
            loop.run(wait_connected(), timeout=150)
            t1 = next(t for state, t in reversed(marks) if state is ClientState.CONNECTED)
            cpu = thread_cpu(tid) - cpu0
            restored = _server_restored(ctx, before)
            raw = raw_restore(proxy.host, proxy.port, paths, kind)
            t_rec.add(n, (t1 - t0) * 1e3)
            c_rec.add(n, cpu / n * 1e6)
            t_raw.add(n, raw * 1e3)
            ratio.add(n, (t1 - t0) / raw)
            ctx.log(f"  {label}: reconnect {r + 1}/{ctx.rounds}: CONNECTED after "
                    f"{(t1 - t0) * 1e3:.1f} ms ({cpu / n * 1e6:.2f} µs CPU/watch), raw bound "
                    f"{raw * 1e3:.1f} ms, server watches restored: {restored}")

        sample = streams[:min(ACLOSE_SAMPLE, n)]

        async def close_sample() -> None:
            for s in sample:
                await s.aclose()

        cpu0 = thread_cpu(tid)
        loop.run(close_sample())
        c_aclose.add(n, (thread_cpu(tid) - cpu0) / len(sample) * 1e6)
        t0 = time.perf_counter()
        loop.run(zk.close(), timeout=1800)
        t_close.add(n, (time.perf_counter() - t0) * 1e3)
        ctx.log(f"  {label}: aclose() {c_aclose.value(n):.1f} µs CPU each, close() with "
                f"{n - len(sample)} watches {t_close.value(n):.1f} ms")
    finally:
        loop.close()
        proxy.close()

    mem = curves.total(f"{kind}_rss", f"{label} watches: memory (RSS growth, child)", "MB")
    res = run_child("mem-watches", ctx.hosts, str(n), PARENT, kind)
    mem.add(n, res["rss_delta"] / 2**20)
    ctx.log(f"  {label}: memory {mem.value(n):.2f} MB for {n} watches")


async def _clear(event: asyncio.Event) -> None:
    event.clear()


def _server_restored(ctx: Ctx, before: int | None) -> str:
    """Compare the server's watch total with the one before the drop (wchs)."""
    if before is None:
        return "not checked (no wchs)"
    deadline = time.monotonic() + 10
    total = server_watch_total(ctx.host, ctx.port)
    # The old connection's watches go when the server has closed it, which may come a
    # moment after the new connection restored its own.
    while total is not None and total != before and time.monotonic() < deadline:
        time.sleep(0.05)
        total = server_watch_total(ctx.host, ctx.port)
    if total is None or total < before:
        raise RuntimeError(f"after the reconnect the server holds {total} watches, "
                           f"{before} before")
    return "yes" if total == before else f"{total} (>= {before})"


# --- N children under one node ----------------------------------------------------------------


def run_children(ctx: Ctx, children: Children, n: int) -> None:
    children.grow(n)
    curves, loop, zk = ctx.curves, ctx.loop, ctx.zk
    t_get = curves.total("children_get", "get_children", "ms")
    c_get = curves.per_item("children_get_cpu", "get_children: client CPU per child", "µs")
    t_raw = curves.total("children_raw", "get_children, raw socket (bound)", "ms")
    t_num = curves.total("children_number", "get_all_children_number", "ms")
    t_event = curves.total("children_event", "children watch: create to event (re-read)",
                           "ms")
    c_event = curves.per_item("children_event_cpu", "children watch: CPU per event per child",
                              "µs")

    async def get() -> float:
        t0 = time.perf_counter()
        got = await zk.get_children(PARENT)
        if len(got) != n:
            raise RuntimeError(f"get_children returned {len(got)}, expected {n}")
        return time.perf_counter() - t0

    async def number() -> float:
        t0 = time.perf_counter()
        got = await zk.get_all_children_number(PARENT)
        if got != n:
            raise RuntimeError(f"get_all_children_number returned {got}, expected {n}")
        return time.perf_counter() - t0

    loop.run(get())
    raw = RawClient(ctx.host, ctx.port, SESSION_TIMEOUT)
    try:
        for _ in range(ctx.rounds):
            cpu0 = ctx.loop_cpu()
            t_get.add(n, loop.run(get()) * 1e3)
            c_get.add(n, (ctx.loop_cpu() - cpu0) / n * 1e6)
            t0 = time.perf_counter()
            if raw.get_children_count(PARENT) != n:
                raise RuntimeError("raw get_children: wrong count")
            t_raw.add(n, (time.perf_counter() - t0) * 1e3)
            t_num.add(n, loop.run(number()) * 1e3)
    finally:
        raw.close()
    # ~11 bytes per child name ("c000000" and its length): 100,000 children make a reply
    # over jute.maxbuffer's default (1 MiB - 1), the limit a Java client applies to what it
    # receives; zkwarden's max_response_size defaults to 16 MiB.
    reply = 4 + 16 + n * (4 + len("c000000"))
    if reply > 0xFFFFF:
        note = (f"get_children of {n:,}: the reply is ~{reply / 2**20:.2f} MiB, over the "
                f"default jute.maxbuffer (1 MiB): the server sends it, a Java client with the "
                f"default limit would refuse it; zkwarden accepts up to max_response_size "
                f"(16 MiB)")
        if note not in t_get.notes:
            t_get.notes.append(note)

    async def watch_events() -> list[tuple[float, float]]:
        stream = zk.watch(PARENT, "children")
        first = await stream.__anext__()
        if len(first.children or ()) != n:
            raise RuntimeError("children stream: wrong first view")
        out = []
        try:
            for r in range(ctx.rounds):
                extra = f"{PARENT}/extra-{r}"
                cpu0 = ctx.loop_cpu()
                t0 = time.perf_counter()
                await zk.create(extra)
                ev = await stream.__anext__()
                elapsed = time.perf_counter() - t0
                cpu = ctx.loop_cpu() - cpu0
                if len(ev.children or ()) != n + 1:
                    raise RuntimeError("children stream: the event missed the new child")
                out.append((elapsed, cpu))
                await zk.delete(extra)
                ev = await stream.__anext__()
                if len(ev.children or ()) != n:
                    raise RuntimeError("children stream: the event missed the removal")
        finally:
            await stream.aclose()
        return out

    for elapsed, cpu in loop.run(watch_events()):
        t_event.add(n, elapsed * 1e3)
        c_event.add(n, cpu / n * 1e6)
    ctx.log(f"  children: get {t_get.value(n):.2f} ms (raw {t_raw.value(n):.2f} ms), "
            f"all_children_number {t_num.value(n):.2f} ms, watch event "
            f"{t_event.value(n):.2f} ms")
