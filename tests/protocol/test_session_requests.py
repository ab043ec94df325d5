"""SessionMachine requests and replies: FIFO matching, zxids, deadlines, xids, prime().

No event loop: every call gets ``now``. The lifecycle table: test_session_machine.py.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from zkwarden.errors import DataTooLargeError, ProtocolError
from zkwarden.protocol import ops
from zkwarden.protocol.framing import DEFAULT_MAX_SEND
from zkwarden.protocol.ops import WatchKind
from zkwarden.protocol.session import AuthReply, Notification, PingReply, Reply, SessionMachine
from zkwarden.protocol.watches import SET_WATCHES_MAX_BYTES, WatchRegistry
from zkwarden.types import ClientState

from ._golden import STAT_HEX
from ._machine import connect_response, connected, frame_xid, notification, reply, send, ustring
from ._wire import decode_request, hx, split_frames

S = ClientState
PING = hx("00000008 fffffffe 0000000b")


# --- reply ordering ---------------------------------------------------------------------


def test_connection_lost_fails_tokens_in_order() -> None:
    m = connected()
    for token in ("a", "b", "c", "d"):
        send(m, ops.GetData("/" + token), token)
    failed = m.connection_lost()
    assert failed == ["a", "b", "c", "d"]
    assert [c.state for c in m.take_changes()] == [S.SUSPENDED]
    assert m.pending_count == 0


def test_replies_matched_fifo() -> None:
    m = connected()
    xa = send(m, ops.GetData("/a"), "a")
    xb = send(m, ops.Sync("/b"), "b")
    xc = send(m, ops.Delete("/c"), "c")
    assert (xa, xb, xc) == (1, 2, 3)
    r1 = m.receive(reply(xa, 10, 0, hx("00000001 78 " + STAT_HEX)), 1.0)
    r2 = m.receive(reply(xb, 11, 0, ustring("/b")), 1.0)
    r3 = m.receive(reply(xc, 12, -101), 1.0)  # NoNode: no body
    assert isinstance(r1, Reply) and isinstance(r2, Reply) and isinstance(r3, Reply)
    assert [r.token for r in (r1, r2, r3)] == ["a", "b", "c"]
    assert r1.result[0] == b"x" and r1.err == 0 and r1.zxid == 10
    assert r2.result == "/b"
    assert (r3.err, r3.result) == (-101, None)
    assert m.pending_count == 0


def test_error_reply_body_not_decoded() -> None:
    m = connected()
    x = send(m, ops.GetData("/a"), "a")
    r = m.receive(reply(x, 10, -102), 1.0)  # NoAuth, no body
    assert isinstance(r, Reply) and (r.err, r.result) == (-102, None)


def test_out_of_order_reply_is_protocol_error() -> None:
    m = connected()
    send(m, ops.Sync("/a"), "a")
    xb = send(m, ops.Sync("/b"), "b")
    with pytest.raises(ProtocolError):
        m.receive(reply(xb, 5, 0, ustring("/b")), 1.0)


def test_read_only_server_refusing_a_write_may_overtake_earlier_reads() -> None:
    # ZooKeeper's ReadOnlyRequestProcessor answers NOTREADONLY itself, while the reads sent
    # before the write are still in its pipeline (seen against a 3.8 read-only member).
    m = connected(read_only=True)
    xa = send(m, ops.GetData("/a"), "a")
    xw = send(m, ops.Create("/w", b"", (), 0), "w")
    xb = send(m, ops.Exists("/b"), "b")
    refused = m.receive(reply(xw, 0, -119), 1.0)
    assert isinstance(refused, Reply) and refused.token == "w" and refused.err == -119
    first = m.receive(reply(xa, 10, 0, hx("00000001 78 " + STAT_HEX)), 1.0)
    assert isinstance(first, Reply) and first.token == "a" and first.result[0] == b"x"
    last = m.receive(reply(xb, 10, -101), 1.0)
    assert isinstance(last, Reply) and last.token == "b" and m.pending_count == 0
    # Any other reply out of order is still a broken stream; so is a refusal of nothing.
    send(m, ops.GetData("/c"), "c")
    xd = send(m, ops.GetData("/d"), "d")
    with pytest.raises(ProtocolError):
        m.receive(reply(xd, 0, -101), 1.0)
    with pytest.raises(ProtocolError):
        m.receive(reply(999, 0, -119), 1.0)


@pytest.mark.parametrize("xid", [1, 7, -3, -8, 0])
def test_reply_with_nothing_pending_is_protocol_error(xid: int) -> None:
    m = connected()
    with pytest.raises(ProtocolError):
        m.receive(reply(xid, 5), 1.0)


def test_short_reply_frame_is_protocol_error() -> None:
    m = connected()
    with pytest.raises(ProtocolError):
        m.receive(hx("00000001 00000000 00000000 000000"), 1.0)  # 15 bytes


def test_notifications_outside_the_fifo_ping_replies_in_order() -> None:
    # Pings pass through the server's request pipeline: their replies come back in order
    # with the other replies. Notifications can come at any point.
    m = connected()
    xa = send(m, ops.Sync("/a"), "a")
    assert m.on_timer(100.0) is not None  # a ping, queued behind /a
    xb = send(m, ops.Sync("/b"), "b", 100.0)
    n = m.receive(notification(3, "/w", zxid=-1), 100.5)
    assert isinstance(n, Notification)
    assert (n.event.type, n.event.state, n.event.path, n.zxid) == (3, 3, "/w", -1)
    assert m.pending_count == 3
    assert m.receive(reply(xa, 20, 0, ustring("/a")), 100.5).token == "a"  # type: ignore[union-attr]
    assert isinstance(m.receive(notification(4, "/w"), 100.5), Notification)
    assert isinstance(m.receive(reply(-2, 0), 100.5), PingReply)
    assert m.receive(reply(xb, 21, 0, ustring("/b")), 100.5).token == "b"  # type: ignore[union-attr]
    assert m.pending_count == 0


def test_ping_reply_out_of_order_is_a_protocol_error() -> None:
    # A corrupted reply whose xid reads as -2 must not pass for a ping reply (the request
    # it stood for would then wait forever on a connection kept alive by pings).
    m = connected()
    send(m, ops.Sync("/a"), "a")
    with pytest.raises(ProtocolError):
        m.receive(reply(-2, 0), 1.0)
    fresh = connected()
    with pytest.raises(ProtocolError):  # no ping was sent at all
        fresh.receive(reply(-2, 0), 1.0)


def test_auth_reply_can_overtake_earlier_replies() -> None:
    m = connected()
    m.auth_frame("digest", b"a:b", "auth1", 0.0)
    xa = send(m, ops.Sync("/a"), "a")
    m.auth_frame("digest", b"c:d", "auth2", 0.0)
    auth = m.receive(reply(-4, 0, 0), 1.0)
    assert isinstance(auth, AuthReply) and (auth.err, auth.token) == (0, "auth1")
    assert m.pending_count == 1
    failed = m.receive(reply(-4, 0, -115), 1.0)
    assert isinstance(failed, AuthReply) and (failed.err, failed.token) == (-115, "auth2")
    assert m.receive(reply(xa, 5, 0, ustring("/a")), 1.0).token == "a"  # type: ignore[union-attr]
    with pytest.raises(ProtocolError):  # a third auth reply: none was sent
        m.receive(reply(-4, 0, 0), 1.0)


def test_auth_reply_without_auth_is_protocol_error() -> None:
    m = connected()
    with pytest.raises(ProtocolError):
        m.receive(reply(-4, 0, 0), 1.0)


def test_last_zxid_only_from_normal_replies_with_positive_zxid() -> None:
    m = connected()
    assert m.last_zxid == 0

    def normal(zxid: int, err: int = 0) -> None:
        x = send(m, ops.Delete("/a"), "t")
        m.receive(reply(x, zxid, err), 1.0)

    normal(0x10)
    assert m.last_zxid == 0x10
    normal(0x11, err=-110)  # a failed write still consumes a zxid
    assert m.last_zxid == 0x11
    normal(-1, err=-6)  # unimplemented: zxid -1
    assert m.last_zxid == 0x11
    normal(0)
    assert m.last_zxid == 0x11
    m.receive(notification(1, "/n", zxid=0x99), 1.0)  # 3.9 notifications carry a zxid
    assert m.last_zxid == 0x11
    assert m.on_timer(100.0) is not None
    m.receive(reply(-2, 0x98), 100.0)  # ping
    assert m.last_zxid == 0x11
    m.auth_frame("digest", b"a:b", "auth", 1.0)
    m.receive(reply(-4, 0x97), 1.0)  # auth
    assert m.last_zxid == 0x11
    normal(0x12)
    assert m.last_zxid == 0x12


# --- deadlines --------------------------------------------------------------------------


def test_timeouts_derive_from_negotiated_timeout() -> None:
    m: SessionMachine[Any] = SessionMachine(requested_timeout=9.0)
    assert m.read_timeout == pytest.approx(6.0)  # before a handshake: the requested one
    m.connect_request(0.0)
    m.handshake(connect_response(6000), 0.0)
    assert m.negotiated_timeout == 6.0
    assert m.read_timeout == pytest.approx(4.0)  # 2/3
    assert m.ping_interval == pytest.approx(2.0)  # 1/3


def test_ping_after_a_third_of_the_timeout_idle() -> None:
    m = connected(6000, now=10.0)
    assert m.next_deadline() == 12.0  # min(last_send + 2, last_recv + 4)
    assert m.on_timer(11.999) is None
    assert m.on_timer(12.0) == PING
    assert m.on_timer(12.5) is None  # the ping reset the idle clock
    assert m.next_deadline() == 14.0  # min(12 + 2, 10 + 4)
    # any sent request resets the send-idle clock
    send(m, ops.Sync("/a"), "a", now=13.0)
    assert m.on_timer(14.5) is None
    assert m.on_timer(15.0) == PING


def test_read_timeout_after_two_thirds_of_silence() -> None:
    m = connected(6000, now=10.0)
    assert not m.read_timed_out(13.999)
    assert m.read_timed_out(14.0)
    m.receive(notification(3, "/w"), 13.0)  # anything heard resets it
    assert not m.read_timed_out(16.999)
    assert m.read_timed_out(17.0)


def test_no_ping_and_no_read_timeout_when_not_connected() -> None:
    m = connected(6000, now=0.0)
    m.connection_lost()
    assert m.on_timer(100.0) is None
    assert m.read_timed_out(100.0) is False
    fresh: SessionMachine[Any] = SessionMachine(requested_timeout=6.0)
    fresh.connect_request(0.0)  # handshake not done yet
    assert fresh.on_timer(100.0) is None
    assert fresh.read_timed_out(100.0) is False


def test_presumed_expiry_at() -> None:
    m = connected(6000, now=5.0)
    m.receive(notification(3, "/w"), 8.0)
    m.connection_lost()
    assert m.presumed_expiry_at() == 14.0
    assert m.check_presumed_expired(13.9) is False
    m.take_changes()
    assert m.check_presumed_expired(14.0) is True
    assert [c.state for c in m.take_changes()] == [S.LOST]


@pytest.mark.parametrize("timeout_ms, base", [(10000, 100.0), (4000, 100.0), (2000, 3.3)])
def test_on_timer_pings_exactly_at_next_deadline(timeout_ms: int, base: float) -> None:
    # The I/O layer sleeps until next_deadline() and then calls on_timer(now); at that
    # instant the ping is due and must be returned, otherwise the timer is re-armed for
    # the same (past) deadline and fires again at once.
    m = connected(timeout_ms, now=base)
    deadline = m.next_deadline()
    assert deadline == base + m.ping_interval
    assert m.on_timer(deadline) == PING


@pytest.mark.parametrize("timeout_ms, base", [(10000, 12345.678), (2000, 100.0), (1000, 3.3)])
def test_read_timed_out_exactly_at_read_deadline(timeout_ms: int, base: float) -> None:
    m = connected(timeout_ms, now=base)
    m.on_timer(base + m.ping_interval + 0.001)  # ping sent, nothing heard since `base`
    deadline = m.next_deadline()
    assert deadline == base + m.read_timeout
    assert m.read_timed_out(deadline)


@pytest.mark.parametrize("timeout_ms, base", [(4000, 0.1), (30000, 3.3), (4321, 100.0)])
def test_presumed_expired_exactly_at_presumed_expiry_at(timeout_ms: int, base: float) -> None:
    m = connected(timeout_ms, now=base)
    m.connection_lost()
    assert m.check_presumed_expired(m.presumed_expiry_at()) is True


# --- xids -------------------------------------------------------------------------------


def test_xids_start_at_one_and_increase() -> None:
    m = connected()
    assert [send(m, ops.Sync("/"), i) for i in range(5)] == [1, 2, 3, 4, 5]
    assert m.close_session_frame("close", 0.0)[4:8] == hx("00000006")  # the same sequence


def test_xid_wraps_to_one() -> None:
    m = connected()
    m._xid = 2**31 - 2  # white-box: skip two billion requests
    f1 = m.submit(ops.Sync("/"), 1, 0.0)
    f2 = m.submit(ops.Sync("/"), 2, 0.0)
    f3 = m.submit(ops.Sync("/"), 3, 0.0)
    assert [frame_xid(f) for f in (f1, f2, f3)] == [2**31 - 1, 1, 2]
    assert f1[4:8] == hx("7fffffff")
    assert f2[4:8] == hx("00000001")


def test_submit_too_large_raises_data_too_large() -> None:
    m = connected(max_send=100)
    with pytest.raises(DataTooLargeError):
        m.submit(ops.SetData("/a", bytes(100)), "big", 0.0)
    assert m.pending_count == 0
    assert send(m, ops.Sync("/"), "next") == 1  # the refused request used no xid
    with pytest.raises(DataTooLargeError):
        m.auth_frame("digest", bytes(100), "auth", 0.0)
    assert m.connection_lost() == ["next"]  # the refused auth is not pending


# --- prime() ----------------------------------------------------------------------------


def _registry(kinds: dict[WatchKind, list[str]]) -> WatchRegistry[str]:
    reg: WatchRegistry[str] = WatchRegistry()
    for kind, paths in kinds.items():
        for p in paths:
            reg.add(kind, p, f"w-{kind.value}")
    return reg


def _long_paths(prefix: str, count: int, length: int, fill: str = "x") -> list[str]:
    return [(f"/{prefix}{i:05d}/" + fill * length)[:length] for i in range(count)]


def restoring(zxid: int = 0, **kw: Any) -> SessionMachine[Any]:
    """A machine that resumed its session on a new connection and has not primed it yet."""
    m = connected(**kw)
    if zxid:
        x = send(m, ops.Sync("/"), "t")
        m.receive(reply(x, zxid, 0, ustring("/")), 0.5)
    m.connection_lost()
    m.connect_request(1.0)
    m.handshake(connect_response(), 1.0)
    m.take_changes()
    return m


SW_FIELDS = {
    WatchKind.DATA: "data",
    WatchKind.EXIST: "exist",
    WatchKind.CHILD: "child",
    WatchKind.PERSISTENT: "persistent",
    WatchKind.PERSISTENT_RECURSIVE: "persistent_recursive",
}


def _check_batches(
    out: bytes,
    n_auth: int,
    kinds: dict[WatchKind, list[str]],
    relative_zxid: int,
    max_send: int = DEFAULT_MAX_SEND,
) -> list[tuple[int, dict[str, Any]]]:
    frames = split_frames(out)
    assert [f[:2] for f in frames[:n_auth]] == [(-4, 100)] * n_auth  # auth first
    batches = []
    for xid, opcode, body in frames[n_auth:]:
        assert xid == -8
        assert 8 + len(body) <= max_send  # every frame passes the send-size check
        batches.append((opcode, decode_request(opcode, body)))
    seen: dict[WatchKind, Counter[str]] = {k: Counter() for k in SW_FIELDS}
    for _opcode, fields in batches:
        assert fields["relative_zxid"] == relative_zxid
        size = 0
        for kind, name in SW_FIELDS.items():
            for p in fields.get(name, []):
                seen[kind][p] += 1
                size += len(p.encode()) + 4  # encoded bytes, with the length prefix
        assert 0 < size <= SET_WATCHES_MAX_BYTES
    for kind in SW_FIELDS:
        assert seen[kind] == Counter(kinds.get(kind, [])), kind  # every path exactly once
    return batches


def test_prime_auth_then_set_watches_batches() -> None:
    kinds = {
        WatchKind.DATA: _long_paths("d", 150, 1000),
        WatchKind.EXIST: _long_paths("e", 100, 1500),
        WatchKind.CHILD: _long_paths("c", 80, 2000) + ["/short"],
    }
    m = restoring(zxid=0x4242)
    out = m.prime([("digest", b"a:b"), ("digest", b"c:d")], _registry(kinds), now=1.5)
    batches = _check_batches(out, 2, kinds, relative_zxid=0x4242)
    assert len(batches) >= 4  # 460,000+ bytes of paths
    assert {opcode for opcode, _ in batches} == {101}  # no persistent watches: SetWatches
    assert m.last_send == 1.5
    # SetWatches replies go through the FIFO (xid -8); they only move the restore on
    assert m.pending_count == len(batches)
    for _ in batches:
        assert m.receive(reply(-8, 0x4242), 2.0) is None
    assert m.pending_count == 0
    assert (m.can_send, m.take_changes()) == (False, [])  # two auth replies still out
    m.receive(reply(-4), 2.0)
    assert m.take_changes() == []
    m.receive(reply(-4), 2.0)
    assert [(c.state, c.new_session) for c in m.take_changes()] == [(S.CONNECTED, False)]


def test_prime_with_persistent_watches_uses_set_watches2() -> None:
    kinds = {
        WatchKind.DATA: _long_paths("d", 60, 1000),
        WatchKind.CHILD: ["/c"],
        WatchKind.PERSISTENT: _long_paths("p", 70, 1000),
        WatchKind.PERSISTENT_RECURSIVE: _long_paths("r", 90, 1000),
    }
    m = restoring()
    out = m.prime([], _registry(kinds), now=1.0)
    batches = _check_batches(out, 0, kinds, relative_zxid=0)
    assert len(batches) >= 2
    for opcode, fields in batches:
        if fields.get("persistent") or fields.get("persistent_recursive"):
            assert opcode == 105


@pytest.mark.parametrize("max_send", [DEFAULT_MAX_SEND, 64 * 1024, 20_000])
def test_prime_batches_non_ascii_paths_by_encoded_bytes(max_send: int) -> None:
    # 3 bytes per character: counting characters would put ~3x too many bytes in a batch
    kinds = {
        WatchKind.DATA: _long_paths("d", 120, 1000, fill="\u20ac"),
        WatchKind.CHILD: _long_paths("c", 60, 900, fill="\u00e9"),
        WatchKind.EXIST: ["/\U0001f600"],
    }
    m = restoring(max_send=max_send)
    out = m.prime([], _registry(kinds), now=1.0)  # no DataTooLargeError
    batches = _check_batches(out, 0, kinds, relative_zxid=0, max_send=max_send)
    total = sum(len(p.encode()) + 4 for paths in kinds.values() for p in paths)
    assert len(batches) >= -(-total // min(SET_WATCHES_MAX_BYTES, max_send))


def test_prime_single_oversized_path_sent_alone() -> None:
    huge = "/" + "h" * (SET_WATCHES_MAX_BYTES + 10)
    kinds = {WatchKind.DATA: ["/a", "/b"], WatchKind.EXIST: [huge]}
    m = restoring()
    frames = split_frames(m.prime([], _registry(kinds), now=1.0))
    decoded = [decode_request(op, body) for _, op, body in frames]
    assert sorted(p for d in decoded for p in d["data"] + d["exist"]) == sorted(
        ["/a", "/b", huge]
    )
    assert any(d["exist"] == [huge] and not d["data"] for d in decoded)


def test_prime_nothing_to_send_is_live_at_once() -> None:
    m = restoring()
    assert m.prime([], WatchRegistry(), now=5.0) == b""
    assert m.last_send == 1.0  # nothing was sent
    assert m.pending_count == 0
    assert [c.state for c in m.take_changes()] == [S.CONNECTED]


def test_prime_only_right_after_a_handshake() -> None:
    m = connected()
    with pytest.raises(ProtocolError):
        m.prime([], WatchRegistry(), 0.0)
    m.connection_lost()
    with pytest.raises(ProtocolError):
        m.prime([], WatchRegistry(), 0.0)


def test_set_watches_and_restore_auth_carry_no_token() -> None:
    m = restoring()
    m.prime([("digest", b"a:b")], _registry({WatchKind.DATA: ["/a"]}), now=1.0)
    assert m.pending_count == 1
    assert m.connection_lost() == []  # nothing of the caller's to fail


def test_deadlines_are_due_when_they_say_so() -> None:
    # Grid form of the three tests above: whatever the timeout and the clock value, calling
    # the check at the instant the machine named is never "not yet".
    rng = random.Random(2181)
    timeouts = [1, 2, 3, 999, 1000, 1234, 2000, 4000, 4321, 6000, 10000, 30000, 40000]
    bases = [0.0, 0.1, 3.3, 100.0, 100.7, 987.654, 12345.678, 1e6 + 0.1]
    bases += [rng.uniform(0, 1e6) for _ in range(20)]
    late = []
    for timeout_ms in timeouts:
        for base in bases:
            m = connected(timeout_ms, now=base)
            if m.on_timer(m.next_deadline()) != PING:
                late.append(("ping", timeout_ms, base))
            if not m.read_timed_out(m.last_recv + m.read_timeout):
                late.append(("read timeout", timeout_ms, base))
            m.connection_lost()
            if not m.check_presumed_expired(m.presumed_expiry_at()):
                late.append(("presumed expiry", timeout_ms, base))
    assert late == []
