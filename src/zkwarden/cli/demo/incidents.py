"""The incidents the demo replays, each with its invariants.

Every incident injects its fault, shows live progress while it lasts and while the fleet
recovers, and returns a :class:`Verdict`: views equal to the truth, time to recover (from
the end of the fault), CPU used (``time.process_time`` of this process), reconnect
attempts (``AsyncClient.connect_attempts``), nodes and sessions leaked.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ...discovery import Added, Removed, ServiceInstance, Updated, get_format
from ...sync import Client
from ...types import ClientState, EventType, WatchEvent
from .fleet import BASE_PATH, NAME, DemoConfig, Fleet, Member, Status, count_changes, unsigned
from .leader import leader_drop, leader_narration, leader_title
from .report import Check, Report, Verdict

__all__ = ("INCIDENTS", "Incident")

#: Reconnect attempts allowed per client: the first ones come quickly (the backoff
#: ceiling doubles from 0.1 s), then full jitter under a 1-2 s ceiling averages one or two
#: per second; a client in a tight loop makes hundreds per second.
_ATTEMPTS_RAMP = 10
_ATTEMPTS_PER_SECOND = 2.0
#: CPU (seconds per second of outage) the whole demo process may use while nothing works.
_OUTAGE_CPU_SHARE = 0.15


@dataclass
class _Window:
    started: float
    cpu: float
    attempts: int
    marks: tuple[list[int], list[int]]


def _open(fleet: Fleet) -> _Window:
    return _Window(time.monotonic(), time.process_time(), fleet.attempts(), fleet.marks())


async def _recover(
    fleet: Fleet, verdict: Verdict, window: _Window, fault_end: float
) -> Status:
    """Wait (with progress) until the fleet recovered; fill in the common columns/checks."""
    cfg = fleet.config
    status, ok = await fleet.observe(
        "recovering", window.started, seconds=cfg.recover_limit, until=lambda s: s.recovered,
        attempts_since=window.attempts,
    )
    verdict.recover = time.monotonic() - fault_end if ok else None
    verdict.cpu = time.process_time() - window.cpu
    verdict.attempts = fleet.attempts() - window.attempts
    verdict.views = f"{status.views_equal}/{status.caches}"
    verdict.checks.append(Check(
        "views equal the truth", status.views_equal == status.caches and status.truth_ok,
        f"{status.views_equal}/{status.caches} caches equal; registry has "
        f"{status.truth_count} nodes",
    ))
    verdict.checks.append(Check(
        f"recovered within {cfg.recover_limit:g} s", ok,
        "recovered" if ok else f"not recovered: {status.text()}",
    ))
    nodes, sessions, details = await fleet.leaks()
    verdict.leaked_nodes, verdict.leaked_sessions = nodes, sessions
    verdict.checks.append(Check("no node or session leaked", not nodes and not sessions,
                                "; ".join(details[:3]) or "none"))
    return status


def _client_story(fleet: Fleet, window: _Window) -> tuple[int, int, int, int]:
    """(suspended, lost, new sessions, resumed) counted over fleet clients since ``window``."""
    states, _ = fleet.seen_since(window.marks)
    suspended = sum(any(c.state is ClientState.SUSPENDED for c in s) for s in states)
    lost = sum(any(c.state is ClientState.LOST for c in s) for s in states)
    new = sum(any(c.state is ClientState.CONNECTED and c.new_session for c in s) for s in states)
    resumed = sum(any(c.state is ClientState.CONNECTED and not c.new_session for c in s)
                  and not any(c.new_session for c in s) for s in states)
    return suspended, lost, new, resumed


def _outage_checks(verdict: Verdict, fleet: Fleet, wall: float) -> None:
    clients = len(fleet.members)
    limit = clients * (_ATTEMPTS_RAMP + _ATTEMPTS_PER_SECOND * wall)
    attempts = verdict.attempts or 0
    verdict.checks.append(Check(
        "reconnects are calm (capped backoff, no storm)", attempts <= limit,
        f"{attempts} attempts by {clients} clients in {wall:.1f} s (limit {limit:.0f})",
    ))
    cpu = verdict.cpu or 0.0
    cpu_limit = _OUTAGE_CPU_SHARE * wall + 0.5
    verdict.checks.append(Check(
        "an outage costs no CPU", cpu <= cpu_limit,
        f"{cpu:.2f} s CPU in {wall:.1f} s (limit {cpu_limit:.2f} s)",
    ))


# --- 1: a short network drop --------------------------------------------------------------


async def network_drop(fleet: Fleet, report: Report) -> Verdict:
    """Cut every connection and drop everything for less than the session timeout."""
    cfg = fleet.config
    verdict = Verdict(f"network drop {cfg.short_drop:g} s")
    proxy = fleet.proxy
    assert proxy is not None
    window = _open(fleet)
    proxy.blackhole()
    proxy.reset()
    await fleet.observe("network down", window.started, attempts_since=window.attempts,
                        seconds=cfg.short_drop)
    proxy.pass_through()
    fault_end = time.monotonic()
    await _recover(fleet, verdict, window, fault_end)
    suspended, lost, new, resumed = _client_story(fleet, window)
    totals = count_changes(fleet.seen_since(window.marks)[1])
    n = len(fleet.members)
    verdict.saw.append(f"{suspended}/{n} clients SUSPENDED at once (connections cut); "
                       f"{resumed} resumed their session, {lost} lost one")
    verdict.saw.append(f"caches: {totals['removed']} removals, {totals['added']} additions, "
                       f"{totals['resynced']} full re-reads after reconnecting")
    verdict.checks.append(Check(
        "sessions survive a drop shorter than the session timeout", lost == 0 and new == 0,
        f"{lost} lost, {new} new sessions",
    ))
    verdict.checks.append(Check(
        "no flap: no cache saw an instance leave", totals["removed"] == 0,
        f"{totals['removed']} removals",
    ))
    return verdict


# --- 2: a drop longer than the session timeout -------------------------------------------


async def long_drop(fleet: Fleet, report: Report) -> Verdict:
    """Drop every packet silently for longer than the session timeout."""
    cfg = fleet.config
    verdict = Verdict(f"silent drop {cfg.long_drop:g} s > session")
    proxy = fleet.proxy
    assert proxy is not None
    window = _open(fleet)
    proxy.blackhole()
    await fleet.observe("silence", window.started, attempts_since=window.attempts,
                        seconds=cfg.long_drop)
    proxy.pass_through()
    fault_end = time.monotonic()
    await _recover(fleet, verdict, window, fault_end)
    suspended, lost, new, _ = _client_story(fleet, window)
    totals = count_changes(fleet.seen_since(window.marks)[1])
    n = len(fleet.members)
    firsts = (m.log.first_time(k, ClientState.SUSPENDED)
              for m, k in zip(fleet.members, window.marks[0], strict=True))
    noticed = [t for t in firsts if t is not None]
    when = ""
    if noticed:
        low, high = min(noticed) - window.started, max(noticed) - window.started
        when = f" after {low:.1f} s" if high - low < 0.05 else f" after {low:.1f}-{high:.1f} s"
    # Counted from the last packet that got through (the proxy went silent then): that
    # is when the clients' read timeout starts.
    verdict.saw.append(f"{suspended}/{n} clients noticed the silence by themselves{when} "
                       "from the last packet "
                       f"(read timeout {cfg.session_timeout * 2 / 3:.1f} s); {lost} declared "
                       f"the session lost; {new} opened new sessions")
    verdict.saw.append(f"registries registered again; caches: {totals['removed']} removals, "
                       f"{totals['added']} additions, {totals['resynced']} full re-reads")
    verdict.checks.append(Check(
        "every client came back on a new session", new == n, f"{new}/{n} new sessions",
    ))
    _outage_checks(verdict, fleet, time.monotonic() - window.started)
    return verdict


# --- 3: a rolling restart of the fleet ----------------------------------------------------


def _number(instance: ServiceInstance) -> int:
    return int(instance.id.split("-")[1])


async def rolling_restart(fleet: Fleet, report: Report) -> Verdict:
    """Replace every instance by a new one, in batches with short gaps."""
    cfg = fleet.config
    pct = round(cfg.batch_fraction * 100)
    verdict = Verdict(f"rolling restart {pct}% batches")
    window = _open(fleet)
    slots = [(m, k) for m in fleet.registrars for k in range(len(m.instances))]
    slots.sort(key=lambda mk: _number(mk[0].instances[mk[1]]))
    size = max(1, math.ceil(len(slots) * cfg.batch_fraction))
    old_ids = {m.instances[k].id for m, k in slots}
    generation = 1 + max(int(m.instances[k].id.rsplit("-g", 1)[1]) for m, k in slots)

    async def restart(member: Member, k: int) -> None:
        assert member.registry is not None
        old = member.instances[k]
        await member.registry.unregister(old)
        new = fleet.new_instance(_number(old), generation)
        member.instances[k] = new
        await member.registry.register(new)

    batches = [slots[i : i + size] for i in range(0, len(slots), size)]
    for batch in batches:
        await asyncio.gather(*(restart(m, k) for m, k in batch))
        await asyncio.sleep(cfg.batch_gap)
    fault_end = time.monotonic()
    new_ids = {m.instances[k].id for m, k in slots}
    report.note(f"{len(slots)} instances restarted in {len(batches)} batches of {size}, "
                f"{cfg.batch_gap * 1000:.0f} ms apart, in {fault_end - window.started:.2f} s")
    await _recover(fleet, verdict, window, fault_end)
    _, changes = fleet.seen_since(window.marks)
    exact = 0
    problems: list[str] = []
    for member, seen in zip(fleet.watchers, changes, strict=True):
        removed = [c.instance.id for c in seen if isinstance(c, Removed)]
        added = [c.instance.id for c in seen if isinstance(c, Added)]
        updated = [c for c in seen if isinstance(c, Updated)]
        if (sorted(removed) == sorted(old_ids) and sorted(added) == sorted(new_ids)
                and not updated):
            exact += 1
        else:
            problems.append(f"{member.label}: {len(removed)} removed, {len(added)} added, "
                            f"{len(updated)} updated")
    verdict.saw.append(f"{exact}/{len(fleet.watchers)} caches saw exactly {len(old_ids)} "
                       f"removals and {len(new_ids)} additions: none lost, none invented")
    verdict.checks.append(Check(
        "every cache saw every change", exact == len(fleet.watchers),
        "; ".join(problems[:3]) or "exact",
    ))
    return verdict


# --- 4: close() from inside a watch callback ----------------------------------------------


async def close_in_callback(fleet: Fleet, report: Report) -> Verdict:
    """A blocking Client closes itself from inside its own watch callback."""
    cfg = fleet.config
    verdict = Verdict("close() in watch callback")
    assert fleet.observer is not None
    control = "/zkwarden-demo/control"
    await fleet.observer.ensure_path(control)
    worker = Client(fleet.proxied, session_timeout=cfg.session_timeout)
    fleet.extra_clients.append(worker)
    await asyncio.to_thread(worker.start)
    session = worker.session_id or 0
    fleet.extra_live.add(session)
    fmt = get_format("curator")
    instance = ServiceInstance(NAME, id="worker-closes-itself", address="10.9.9.9", port=9000)
    await asyncio.to_thread(worker.create, fmt.instance_path(BASE_PATH, instance),
                            fmt.encode(instance), ephemeral=True)
    fleet.extra_ids.add(instance.id)
    await fleet.observe("joining", time.monotonic(), seconds=cfg.recover_limit,
                        until=lambda s: s.recovered)

    done = threading.Event()
    outcome: dict[str, object] = {}

    def callback(event: WatchEvent) -> None:
        if event.type is EventType.NONE:
            return  # the current state, delivered first
        began = time.monotonic()
        worker.close()
        outcome["close"] = time.monotonic() - began
        done.set()

    def on_error(exc: Exception) -> None:
        outcome["ended"] = type(exc).__name__

    await asyncio.to_thread(worker.watch, control, "data", callback, on_error=on_error)
    window = _open(fleet)
    fleet.extra_ids.discard(instance.id)
    await fleet.observer.set(control, b"close now")
    returned = await asyncio.to_thread(done.wait, 10.0)
    fleet.extra_live.discard(session)
    gone_after = await _session_gone_after(fleet, session, window.started, cfg.session_timeout)
    await _recover(fleet, verdict, window, window.started)
    await asyncio.sleep(0.2)  # let on_error arrive (it runs on the dispatcher)
    _, changes = fleet.seen_since(window.marks)
    left = sum(any(isinstance(c, Removed) and c.instance.id == instance.id for c in seen)
               for seen in changes)
    states, _ = fleet.seen_since(window.marks)
    disturbed = sum(bool(s) for s in states)
    close_time = outcome.get("close")
    took = f"{close_time * 1000:.0f} ms" if isinstance(close_time, float) else "never"
    verdict.saw.append(f"close() returned inside the callback in {took}; the session was gone "
                       f"from the server after "
                       f"{'never' if gone_after is None else f'{gone_after * 1000:.0f} ms'}; "
                       f"the watch ended with {outcome.get('ended', 'nothing')}")
    verdict.saw.append(f"{left}/{len(fleet.watchers)} caches saw the worker leave; "
                       f"{disturbed} other clients noticed anything")
    verdict.checks += [
        Check("close() from its own watch callback returns", returned and close_time is not None,
              f"returned in {took}" if returned else "still blocked after 10 s"),
        Check("the session ends on the server at once", gone_after is not None
              and gone_after < cfg.session_timeout / 2,
              "never" if gone_after is None else f"after {gone_after:.2f} s"),
        Check("the watch ends with ClientClosedError", outcome.get("ended") == "ClientClosedError",
              str(outcome.get("ended", "no ending reported"))),
        Check("every cache saw the worker leave", left == len(fleet.watchers),
              f"{left}/{len(fleet.watchers)}"),
        Check("the rest of the fleet is undisturbed", disturbed == 0,
              f"{disturbed} clients changed state"),
    ]
    await fleet.observer.delete("/zkwarden-demo", recursive=True)
    if not returned:
        await asyncio.to_thread(worker.close, 1.0)
    return verdict


async def _session_gone_after(
    fleet: Fleet, session: int, started: float, limit: float
) -> float | None:
    """Seconds from ``started`` until ``session`` is unknown to the server (None: never)."""
    deadline = time.monotonic() + limit
    target = unsigned(session)
    while time.monotonic() < deadline:
        sessions = {unsigned(s) for s in await asyncio.to_thread(fleet.server.sessions)}
        if target not in sessions:
            return time.monotonic() - started
        await asyncio.sleep(0.02)
    return None


# --- 5: a server that accepts and drops connections ---------------------------------------


async def flapping_server(fleet: Fleet, report: Report) -> Verdict:
    """Accept every connection and close it at once, for a while."""
    cfg = fleet.config
    verdict = Verdict(f"accept-then-close {cfg.flap:g} s")
    proxy = fleet.proxy
    assert proxy is not None
    before = proxy.stats().accept_then_closed
    window = _open(fleet)
    proxy.accept_then_close(True)
    proxy.reset()
    await fleet.observe("slamming", window.started, attempts_since=window.attempts,
                        seconds=cfg.flap)
    proxy.accept_then_close(False)
    fault_end = time.monotonic()
    slammed = proxy.stats().accept_then_closed - before
    await _recover(fleet, verdict, window, fault_end)
    suspended, lost, new, _ = _client_story(fleet, window)
    n = len(fleet.members)
    verdict.saw.append(f"the server accepted and dropped {slammed} connections; {lost}/{n} "
                       f"clients declared their session lost, {new} opened new sessions")
    verdict.saw.append(f"{verdict.attempts} reconnect attempts in all "
                       f"({(verdict.attempts or 0) / max(n, 1):.1f} per client, "
                       f"backoff 0.1-{cfg.backoff_max:g} s with full jitter)")
    _outage_checks(verdict, fleet, time.monotonic() - window.started)
    return verdict


@dataclass(frozen=True, slots=True)
class Incident:
    """One incident: its number, how it is told, and how it runs."""

    key: str
    title: Callable[[DemoConfig], str]
    narration: Callable[[DemoConfig], str]
    run: Callable[[Fleet, Report], Awaitable[Verdict]]


INCIDENTS: tuple[Incident, ...] = (
    Incident(
        "drop",
        lambda c: f"network drop: {c.short_drop:g} s, shorter than the session timeout",
        lambda c: (f"Every connection is cut and nothing gets through for {c.short_drop:g} s, "
                   f"less than the {c.session_timeout:g} s session timeout: sessions must "
                   "survive, and no instance may vanish from any view."),
        network_drop,
    ),
    Incident(
        "long-drop",
        lambda c: (f"silent network drop: {c.long_drop:g} s, longer than the "
                   f"{c.session_timeout:g} s session timeout"),
        lambda c: (f"Packets vanish for {c.long_drop:g} s without a reset: the server "
                   "expires every session and its nodes, and the clients must notice by "
                   "themselves, open new sessions and register again."),
        long_drop,
    ),
    Incident(
        "rolling-restart",
        lambda c: (f"rolling restart of the fleet: {round(c.batch_fraction * 100)}% batches, "
                   f"{c.batch_gap * 1000:.0f} ms apart"),
        lambda c: (f"All {c.instances} instances restart as new ones, a quarter at a time: "
                   "every cache must see every instance leave and every new one arrive, "
                   "none lost, none invented."),
        rolling_restart,
    ),
    Incident(
        "close-in-callback",
        lambda c: "close() called from inside a watch callback",
        lambda c: ("A worker calls close() on its own client from inside that client's "
                   "watch callback (where other clients deadlock or throw): it must return, "
                   "end its session on the server at once, and vanish from every view."),
        close_in_callback,
    ),
    Incident(
        "accept-then-close",
        lambda c: f"a server that accepts connections and drops them, for {c.flap:g} s",
        lambda c: ("Every connection is accepted and closed before a byte is read: clients "
                   "must back off calmly (no reconnect storm, no CPU burnt) and recover the "
                   "moment the server heals."),
        flapping_server,
    ),
    Incident("leader-drop", leader_title, leader_narration, leader_drop),
)
