"""FaultProxy between raw sockets and a real ZooKeeper server (no mocks)."""

from __future__ import annotations

import asyncio
import select
import socket
import struct
import threading
import time

import pytest

from zkwarden.errors import ConfigurationError
from zkwarden.testing import FaultProxy, ProxyError, ZooKeeperServer, free_port

QUIET = 0.4  # how long "nothing arrives" is watched for


def _still_open(sock: socket.socket) -> bool:
    """True when the peer has neither closed nor reset the connection."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True  # no EOF, no reset, no data
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except OSError:
        return False


def _assert_silent(sock: socket.socket) -> None:
    sock.settimeout(QUIET)
    with pytest.raises(TimeoutError):
        sock.recv(1, socket.MSG_PEEK)
    assert _still_open(sock)


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_passes_a_handshake_and_counts_bytes(fault_proxy: FaultProxy, raw_zk) -> None:
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    hs = conn.handshake()
    assert hs.protocol_version == 0 and hs.timeout == 2000 and hs.session_id != 0
    assert conn.ping() == -2
    stats = fault_proxy.stats()
    assert stats.bytes_up == 49 + 12 and stats.bytes_down == 41 + 20
    assert stats.accepted == 1 and stats.open == 1 and stats.accept_then_closed == 0
    assert fault_proxy.connect_string == f"127.0.0.1:{fault_proxy.port}"


def test_blackhole_holds_bytes_without_closing(
    fault_proxy: FaultProxy, zk_server: ZooKeeperServer, raw_zk
) -> None:
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    conn.handshake()
    fault_proxy.blackhole()
    conn.sock.sendall(struct.pack(">iii", 8, -2, 11))  # a ping
    _assert_silent(conn.sock)
    # New connections are accepted, but nothing flows on them either.
    late = raw_zk(fault_proxy.host, fault_proxy.port)
    late.sock.sendall(late.connect_request())
    _assert_silent(late.sock)
    assert fault_proxy.stats().open == 2
    # Like a firewall rule being lifted: the held bytes arrive, late but intact.
    fault_proxy.pass_through()
    conn.sock.settimeout(3)
    late.sock.settimeout(3)
    assert struct.unpack(">i", conn.read_frame()[4:8])[0] == -2
    assert late.parse_connect_response(late.read_frame()[4:]).session_id != 0


def test_blackhole_discard_loses_bytes(fault_proxy: FaultProxy, raw_zk) -> None:
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    fault_proxy.blackhole(discard=True)
    conn.sock.sendall(conn.connect_request())
    _assert_silent(conn.sock)
    fault_proxy.pass_through()
    _assert_silent(conn.sock)  # the request was dropped for good
    assert fault_proxy.stats().bytes_up == 0


def test_blackhole_one_direction(
    fault_proxy: FaultProxy, zk_server: ZooKeeperServer, raw_zk
) -> None:
    before = zk_server.sessions()
    fault_proxy.blackhole("downstream")
    down = raw_zk(fault_proxy.host, fault_proxy.port)
    down.sock.sendall(down.connect_request())
    # The request reached the server (a session exists) but the reply is held.
    _wait_for(lambda: len(zk_server.sessions() - before) == 1)
    _assert_silent(down.sock)

    fault_proxy.blackhole("upstream")  # replaces the downstream hold: the reply flows now
    down.sock.settimeout(3)
    assert len(down.read_frame()) == 41
    up = raw_zk(fault_proxy.host, fault_proxy.port)
    up.sock.sendall(up.connect_request())
    _assert_silent(up.sock)
    time.sleep(0.2)
    assert len(zk_server.sessions() - before) == 1  # the second request never arrived


def test_reset_aborts_open_connections(
    fault_proxy: FaultProxy, zk_server: ZooKeeperServer, raw_zk
) -> None:
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    hs = conn.handshake()
    assert any(f"sid={hs.session_id:#x}" in line for line in zk_server.cons())
    fault_proxy.reset()
    conn.sock.settimeout(3)
    with pytest.raises(ConnectionResetError):
        conn.sock.recv(1)
    # The server lost its side too (the session itself lives on until it expires).
    _wait_for(lambda: not any(f"sid={hs.session_id:#x}" in ln for ln in zk_server.cons()))
    assert fault_proxy.stats().open == 0
    again = raw_zk(fault_proxy.host, fault_proxy.port)  # new connections are fine
    assert again.handshake().session_id != 0


def test_accept_then_close(fault_proxy: FaultProxy, raw_zk) -> None:
    existing = raw_zk(fault_proxy.host, fault_proxy.port)
    existing.handshake()
    fault_proxy.accept_then_close(True)
    for _ in range(2):
        conn = raw_zk(fault_proxy.host, fault_proxy.port)  # the TCP connect succeeds ...
        start = time.monotonic()
        assert conn.sock.recv(1) == b""  # ... and EOF follows at once
        assert time.monotonic() - start < 1.0
    assert existing.ping() == -2  # open connections carry on
    stats = fault_proxy.stats()
    assert stats.accept_then_closed == 2 and stats.accepted == 3
    fault_proxy.accept_then_close(False)
    assert raw_zk(fault_proxy.host, fault_proxy.port).handshake().session_id != 0


def test_refuse_connections(fault_proxy: FaultProxy, raw_zk) -> None:
    existing = raw_zk(fault_proxy.host, fault_proxy.port)
    existing.handshake()
    fault_proxy.refuse_connections(True)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((fault_proxy.host, fault_proxy.port), timeout=2).close()
    assert existing.ping() == -2
    fault_proxy.refuse_connections(False)
    assert raw_zk(fault_proxy.host, fault_proxy.port).handshake().session_id != 0


def test_corrupt_next_frame_inverts_the_payload(fault_proxy: FaultProxy, raw_zk) -> None:
    fault_proxy.corrupt_next_frame()
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    conn.sock.sendall(conn.connect_request())
    frame = conn.read_frame()
    assert struct.unpack(">i", frame[:4])[0] == 37  # the length is left alone
    restored = bytes(b ^ 0xFF for b in frame[4:])
    hs = conn.parse_connect_response(restored)
    assert hs.protocol_version == 0 and hs.timeout == 2000 and hs.session_id != 0
    assert struct.unpack(">i", frame[4:8])[0] == -1
    # One shot: the next frame is intact.
    assert conn.ping() == -2


def test_corrupt_next_frame_bogus_length(fault_proxy: FaultProxy, raw_zk) -> None:
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    conn.handshake()
    fault_proxy.corrupt_next_frame("length")
    conn.sock.sendall(struct.pack(">iii", 8, -2, 11))
    header = conn.recv_exact(4)
    assert struct.unpack(">i", header)[0] == 0x7FFFFFFF
    assert len(conn.recv_exact(16)) == 16  # the payload itself passes


def test_truncate_next_frame(fault_proxy: FaultProxy, raw_zk) -> None:
    fault_proxy.truncate_next_frame()
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    conn.sock.sendall(conn.connect_request())
    data = conn.recv_exact(100)  # stops at EOF
    assert len(data) == (4 + 37) // 2
    assert struct.unpack(">i", data[:4])[0] == 37
    assert fault_proxy.stats().bytes_down == 20
    assert raw_zk(fault_proxy.host, fault_proxy.port).handshake().session_id != 0


def test_delay_adds_latency_each_way(fault_proxy: FaultProxy, raw_zk) -> None:
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    conn.handshake()
    fault_proxy.delay(0.25)
    start = time.monotonic()
    conn.ping()
    assert time.monotonic() - start >= 0.5
    fault_proxy.pass_through()
    start = time.monotonic()
    conn.ping()
    assert time.monotonic() - start < 0.5


def test_upstream_choice_and_failures(zk_server: ZooKeeperServer, raw_zk) -> None:
    dead = ("127.0.0.1", free_port())
    with FaultProxy([dead, (zk_server.host, zk_server.port)]) as proxy:
        # The first connection goes to the dead upstream: the proxy resets it (so fast that
        # under load the reset may already fail the connect() itself).
        with pytest.raises(ConnectionError):
            first = raw_zk(proxy.host, proxy.port)
            first.sock.sendall(first.connect_request())
            first.sock.recv(1)
        assert raw_zk(proxy.host, proxy.port).handshake().session_id != 0  # round-robin
        proxy.use_upstream(1)
        for _ in range(2):
            assert raw_zk(proxy.host, proxy.port).handshake().session_id != 0
        proxy.set_upstreams(zk_server.connect_string)
        proxy.use_upstream(None)
        assert raw_zk(proxy.host, proxy.port).handshake().session_id != 0
        assert proxy.stats().upstream_failures == 1
        with pytest.raises(ConfigurationError):
            proxy.use_upstream(5)


def test_loopback_only_and_validation() -> None:
    with pytest.raises(ConfigurationError):
        FaultProxy([("10.1.2.3", 2181)])
    with pytest.raises(ConfigurationError):
        FaultProxy("127.0.0.1:2181", host="0.0.0.0")
    with pytest.raises(ConfigurationError):
        FaultProxy("127.0.0.1:2181/chroot")
    proxy = FaultProxy("127.0.0.1:2181")
    with pytest.raises(ProxyError):
        proxy.blackhole()  # not started
    with proxy:
        with pytest.raises(ConfigurationError):
            proxy.blackhole("sideways")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError):
            proxy.delay(-1)


def test_close_is_idempotent_bounded_and_from_any_thread(
    zk_server: ZooKeeperServer, raw_zk
) -> None:
    proxy = FaultProxy(zk_server.connect_string).start()
    conn = raw_zk(proxy.host, proxy.port)
    conn.handshake()
    proxy.blackhole()  # a held connection must not delay close()
    start = time.monotonic()
    closer = threading.Thread(target=proxy.close)
    closer.start()
    closer.join(5)
    proxy.close()
    assert time.monotonic() - start < 3.0
    conn.sock.settimeout(3)
    assert conn.sock.recv(1) == b""
    with pytest.raises(ProxyError):
        proxy.start()
    with pytest.raises(ProxyError):
        proxy.reset()
    final = proxy.stats()  # still readable after close
    assert final.accepted == 1 and final.open == 0


async def test_usable_from_async_code(fault_proxy: FaultProxy) -> None:
    reader, writer = await asyncio.open_connection(fault_proxy.host, fault_proxy.port)
    try:
        fault_proxy.blackhole("downstream")  # plain sync call, fine on any loop
        writer.write(_connect_request())
        await writer.drain()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(4), QUIET)
        fault_proxy.pass_through()
        header = await asyncio.wait_for(reader.readexactly(4), 3)
        assert struct.unpack(">i", header)[0] == 37
    finally:
        writer.close()
        await writer.wait_closed()


def _connect_request() -> bytes:
    payload = struct.pack(">iqiqi16sb", 0, 0, 4000, 0, 16, b"\0" * 16, 0)
    return struct.pack(">i", len(payload)) + payload


def _get_data(conn, path: str) -> tuple[int, int, int, bytes]:
    body = struct.pack(">i", len(path.encode())) + path.encode() + b"\x00"
    return conn.request(4, body)


def test_corrupt_next_reply_body_keeps_the_header(
    fault_proxy: FaultProxy, raw_zk, zk_path: str
) -> None:
    from zkwarden.errors import ProtocolError
    from zkwarden.protocol import ops
    from zkwarden.protocol.jute import Reader

    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    conn.handshake()
    assert conn.create(zk_path) == 0
    fault_proxy.corrupt_next_reply_body()
    # Frames that are not a successful reply pass untouched: a ping (xid -2), an error
    # reply, and a new connection's ConnectResponse (no ReplyHeader at all).
    assert conn.ping() == -2
    assert not conn.exists(zk_path + "/missing")
    assert raw_zk(fault_proxy.host, fault_proxy.port).handshake().session_id != 0
    xid, zxid, err, bad = _get_data(conn, zk_path)
    assert (xid, err) == (conn.xid, 0) and zxid > 0  # the ReplyHeader is intact
    again = _get_data(conn, zk_path)  # one shot: the next reply is intact
    assert again[2] == 0 and len(again[3]) == len(bad)
    assert bad[:4] == struct.pack(">i", -2) and again[3][:4] == struct.pack(">i", 0)
    assert bad[4:] == again[3][4:]  # only the first 4 body bytes changed
    ops.GetData(zk_path, False).read_response(Reader(again[3]))
    with pytest.raises(ProtocolError):
        ops.GetData(zk_path, False).read_response(Reader(bad))


def _assert_reset(conn) -> None:
    conn.sock.settimeout(3)
    with pytest.raises(ConnectionError):
        # After an RST, recv raises (or, if the reset raced our send, the send does).
        conn.sock.sendall(struct.pack(">iii", 8, -2, 11))
        if not conn.sock.recv(1):
            raise ConnectionResetError("EOF instead of a reset")


def test_drop_after_server_frames_resets_the_next_connection(
    fault_proxy: FaultProxy, raw_zk
) -> None:
    open_before = raw_zk(fault_proxy.host, fault_proxy.port)
    open_before.handshake()
    fault_proxy.drop_after_server_frames(1)
    assert open_before.ping() == -2  # connections already open are not the next one
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    hs = conn.handshake()  # frame 1, the ConnectResponse, arrives whole ...
    assert hs.session_id != 0
    _assert_reset(conn)  # ... and the connection is reset right after it
    again = raw_zk(fault_proxy.host, fault_proxy.port)  # one shot
    again.handshake()
    assert again.ping() == -2 and again.ping() == -2

    fault_proxy.drop_after_server_frames(2)
    late = raw_zk(fault_proxy.host, fault_proxy.port)
    late.handshake()
    assert late.ping() == -2  # frame 2 arrives ...
    _assert_reset(late)  # ... then the reset
    assert fault_proxy.stats().dropped_after_frames == 2
    with pytest.raises(ConfigurationError):
        fault_proxy.drop_after_server_frames(-1)
    with pytest.raises(ConfigurationError):
        fault_proxy.drop_after_server_frames(1, times=0)


def test_drop_after_server_frames_for_new_sessions_only(
    fault_proxy: FaultProxy, raw_zk
) -> None:
    first = raw_zk(fault_proxy.host, fault_proxy.port)
    hs = first.handshake()
    first.close()
    fault_proxy.drop_after_server_frames(1, new_session=True)
    # Re-attaching the existing session passes ...
    resume = raw_zk(fault_proxy.host, fault_proxy.port)
    payload = struct.pack(">iqiqi16sb", 0, 0, 4000, hs.session_id, 16, hs.password, 0)
    resume.sock.sendall(struct.pack(">i", len(payload)) + payload)
    assert resume.parse_connect_response(resume.read_frame()[4:]).session_id == hs.session_id
    assert resume.ping() == -2
    # ... the next connection asking for a new session is reset after its handshake.
    fresh = raw_zk(fault_proxy.host, fault_proxy.port)
    assert fresh.handshake().session_id not in (0, hs.session_id)
    _assert_reset(fresh)
    assert resume.ping() == -2


def test_pass_through_disarms_reply_faults(fault_proxy: FaultProxy, raw_zk, zk_path) -> None:
    fault_proxy.corrupt_next_reply_body()
    fault_proxy.drop_after_server_frames(1)
    fault_proxy.pass_through()
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    conn.handshake()
    assert conn.create(zk_path) == 0
    assert _get_data(conn, zk_path)[3][:4] == struct.pack(">i", 0)
    assert conn.ping() == -2


def test_drop_before_the_server_every_time_and_end_blackhole(
    fault_proxy: FaultProxy, zk_server: ZooKeeperServer, raw_zk
) -> None:
    first = raw_zk(fault_proxy.host, fault_proxy.port)
    hs = first.handshake()
    first.close()
    fault_proxy.blackhole()
    fault_proxy.drop_after_server_frames(0, new_session=True, times=None)
    fault_proxy.end_blackhole()  # lifts the blackhole only: the drop stays armed
    before = zk_server.sessions()
    for _ in range(3):  # every new-session request is reset before reaching the server
        conn = raw_zk(fault_proxy.host, fault_proxy.port)
        conn.sock.sendall(conn.connect_request())
        conn.sock.settimeout(3)
        with pytest.raises(ConnectionError):
            if not conn.sock.recv(1):
                raise ConnectionResetError("EOF instead of a reset")
    assert not zk_server.sessions() - before
    assert fault_proxy.stats().dropped_after_frames == 3
    resume = raw_zk(fault_proxy.host, fault_proxy.port)  # resuming passes
    payload = struct.pack(">iqiqi16sb", 0, 0, 4000, hs.session_id, 16, hs.password, 0)
    resume.sock.sendall(struct.pack(">i", len(payload)) + payload)
    assert resume.parse_connect_response(resume.read_frame()[4:]).session_id == hs.session_id
    fault_proxy.pass_through()
    assert raw_zk(fault_proxy.host, fault_proxy.port).handshake().session_id != 0


def test_drop_then_refuse(fault_proxy: FaultProxy, raw_zk) -> None:
    fault_proxy.drop_after_server_frames(1, then_refuse=True)
    conn = raw_zk(fault_proxy.host, fault_proxy.port)
    assert conn.handshake().session_id != 0
    _assert_reset(conn)
    with pytest.raises(ConnectionRefusedError):  # refusing from the moment of the drop
        socket.create_connection((fault_proxy.host, fault_proxy.port), timeout=2).close()
    fault_proxy.pass_through()
    assert raw_zk(fault_proxy.host, fault_proxy.port).handshake().session_id != 0
