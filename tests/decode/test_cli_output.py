"""``zkwarden decode`` output: the timeline grouped per connection (with the session id in
hex), ``--follow`` in time order, ``--summary --json`` one object per session, and the
help that documents both and the exit codes."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from zkwarden.cli import main
from zkwarden.decode.synth import PcapWriter
from zkwarden.protocol import ops

from ._frames import connect_request, connect_response, get_data_reply, reply, request

S = 2181
SESSION_A, SESSION_B = 0x100000434530001, 0x100000434530002
_CLOCK = r"\d\d:\d\d:\d\d\.\d{6}"


def _session(prefix: str, session: int, watch_and_error: bool) -> list[tuple[bool, bytes]]:
    """A session of three getData on /{prefix}N; optionally with a watch that fires (and
    is followed by a re-read with a watch) and a NoNode error."""
    out = [(True, connect_request()), (False, connect_response(session))]
    for xid in range(1, 4):
        path = f"/{prefix}{xid}"
        out.append((True, request(xid, ops.GetData(path, watch=watch_and_error and xid == 1))))
        out.append((False, get_data_reply(xid)))
    if watch_and_error:
        out.append((False, reply(-1, struct_event(3, f"/{prefix}1"), zxid=-1)))
        out.append((True, request(4, ops.GetData(f"/{prefix}1", watch=True))))
        out.append((False, get_data_reply(4)))
        out.append((True, request(5, ops.Exists(f"/{prefix}-missing"))))
        out.append((False, reply(5, err=-101)))
    return out


def struct_event(event_type: int, path: str) -> bytes:
    import struct

    raw = path.encode()
    return struct.pack(">iii", event_type, 3, len(raw)) + raw


def _two_sessions(tmp_path: Path, storm: int = 0) -> Path:
    """Two sessions whose frames interleave in time, then ``storm`` connections that are
    accepted and closed without a byte."""
    buf = io.BytesIO()
    w = PcapWriter(buf)
    w.open(1.0, 50001, S)
    w.open(1.0, 50002, S)
    t = 1.0
    a = _session("a", SESSION_A, True)
    b = _session("b", SESSION_B, False)
    for i in range(max(len(a), len(b))):
        for port, chunks in ((50001, a), (50002, b)):
            if i < len(chunks):
                from_client, data = chunks[i]
                t += 0.001
                w.packet(t, port, S, data) if from_client else w.packet(t, S, port, data)
    for n in range(storm):
        t += 0.2
        w.open(t, 51000 + n, S)
        w.close(t + 0.001, 51000 + n, S)
    path = tmp_path / "two.pcap"
    path.write_bytes(buf.getvalue())
    return path


def _decode(capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert main(["decode", *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_timeline_is_grouped_per_connection_with_hex_session(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _decode(capsys, str(_two_sessions(tmp_path)))
    headers = [i for i, line in enumerate(lines) if line.startswith("connection #")]
    assert [lines[i] for i in headers] == [
        f"connection #1 127.0.0.1:50001 -> 127.0.0.1:2181, session 0x{SESSION_A:x} "
        "(timeout 10000 ms)",
        f"connection #2 127.0.0.1:50002 -> 127.0.0.1:2181, session 0x{SESSION_B:x} "
        "(timeout 10000 ms)",
    ]
    first, second = lines[headers[0] + 1:headers[1]], lines[headers[1] + 1:]
    # every frame of a connection under its header, none of the other's
    assert len(first) == 13 and len(second) == 8
    assert not [line for line in first if "/b" in line]
    assert not [line for line in second if "/a" in line]
    for group in (first, second):
        assert all(re.match(rf"  +(\d+|-) {_CLOCK} ", line) for line in group), group
        clocks = [re.search(_CLOCK, line).group(0) for line in group]  # type: ignore[union-attr]
        assert clocks == sorted(clocks)
        # session ids in hex, in the handshake's details too
        assert "session_id=0x0 " in group[0]
        assert f"session_id=0x{SESSION_A if group is first else SESSION_B:x} " in group[1]
    assert not [line for line in lines if str(SESSION_A) in line or str(SESSION_B) in line]
    # frame numbers, the ones findings cite, are the capture's
    assert first[0].split()[0] == "1" and second[0].split()[0] == "2"


def test_findings_sit_in_their_connection_and_storms_after_all(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _decode(capsys, str(_two_sessions(tmp_path, storm=5)))
    headers = [line for line in lines if line.startswith("connection #")]
    assert len(headers) == 7
    assert headers[2:] == [f"connection #{n} 127.0.0.1:{51000 + n - 3} -> 127.0.0.1:2181, "
                           "no session established" for n in range(3, 8)]
    assert lines[-2] == "across connections"
    assert "FINDING reconnect-storm: 5 connections from 127.0.0.1" in lines[-1]


def test_follow_keeps_time_order_across_connections(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _decode(capsys, str(_two_sessions(tmp_path)), "--follow")
    assert not [line for line in lines if line.startswith("connection #")]
    conns = [line.split()[1] for line in lines]
    assert conns[:6] == ["#1", "#2", "#1", "#2", "#1", "#2"]
    clocks = [line.split()[0] for line in lines]
    assert clocks == sorted(clocks)
    assert lines[1].split()[2] == "-"  # #2's ConnectRequest: no session yet
    assert lines[3].split()[2] == f"0x{SESSION_B:x}"


def test_summary_json_is_one_object_per_session(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _decode(capsys, str(_two_sessions(tmp_path)), "--summary", "--json")
    records = [json.loads(line) for line in lines]
    assert [r["session"] for r in records] == [f"0x{SESSION_A:x}", f"0x{SESSION_B:x}"]
    a, b = records
    assert a["ops"] == {"getData": 4, "connect": 1, "exists": 1}
    assert b["ops"] == {"getData": 3, "connect": 1}
    assert a["errors"] == {"-101": 1} and b["errors"] == {}
    assert (a["watches_set"], a["watches_fired"]) == (2, 1)
    assert (b["watches_set"], b["watches_fired"]) == (0, 0)
    assert a["connections"] == 1 and a["reconnects"] == 0 and a["findings"] == {}
    latency = b["latency_ms"]
    assert set(latency) == {"p50", "p90", "p99", "max"}
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


def test_help_documents_grouping_follow_and_exit_codes(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "time order across connections instead of grouped per connection" in out
    assert "grouped per connection" in out and "session id (hex)" in out
    for code in ("0 OK the capture was decoded", "1 ERROR the capture cannot be read",
                 "2 USAGE not a pcap/pcapng capture", "130 INTERRUPTED"):
        assert code in out, code
    assert "3 NO_NODE" not in out  # not the generic table: decode has its own


def test_exit_codes_are_what_help_says(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(tmp_path / "missing.pcap")]) == 1
    (tmp_path / "text.pcap").write_text("not a capture\n")
    assert main(["decode", str(tmp_path / "text.pcap")]) == 2
    assert main(["decode", str(_two_sessions(tmp_path, storm=5))]) == 0  # findings: still 0
