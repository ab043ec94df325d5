"""``zkwarden decode CAPTURE``: read ZooKeeper traffic from a pcap/pcapng capture.

Prints a timeline (one line per frame, findings inline, grouped per connection under a
header with its session id), ``--json`` (one object per line and per frame or finding, in
capture order), or ``--summary`` (per-session statistics; with ``--json`` one object per
session). ``-`` reads the capture from stdin, so
``tcpdump -i any -U -w - port 2181 | zkwarden decode - --follow`` works live: ``--follow``
prints each frame as it arrives, in time order across connections. :data:`EPILOG` lists
the exit codes (the common ones; findings do not change them).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import BinaryIO

from ..decode import CaptureError, DecodeOptions, Finding, Frame, decode_stream
from ..decode.render import (
    finding_json,
    finding_line,
    frame_json,
    frame_line,
    summary_lines,
    summary_records,
    timeline_lines,
)
from . import exitcodes
from .output import Output
from .session import Options

__all__ = ("EPILOG", "add_arguments", "cmd_decode")

#: The end of ``zkwarden decode --help``: the output and the exit codes of this command.
EPILOG = """\
output:
  The timeline is grouped per connection: a header line with the connection's client,
  server and session id (hex), then its frames in time order, each with its frame number
  (the numbers findings cite). -> request, <- reply (with its latency), <* watch
  notification, !! a note from the decoder. --follow prints frames as they are decoded,
  in time order across all connections, each line naming its connection and session.
  --json prints one object per frame or finding, in capture order; with --summary, one
  object per session.

exit codes:
    0  OK                the capture was decoded (findings or not: they do not change it)
    1  ERROR             the capture cannot be read (missing file, I/O error)
    2  USAGE             not a pcap/pcapng capture (or corrupt), or bad arguments
  130  INTERRUPTED       interrupted (Ctrl-C), e.g. stopping a live `-` read"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``zkwarden decode`` (and its help's epilog: output, exit codes)."""
    p.epilog = EPILOG
    p.add_argument("capture", help="a pcap or pcapng file ('-': read stdin)")
    p.add_argument("--summary", action="store_true",
                   help="per-session statistics instead of the timeline (--json: one "
                        "object per session)")
    p.add_argument("--follow", action="store_true",
                   help="print each frame as soon as it is decoded (live captures), in "
                        "time order across connections instead of grouped per connection")
    p.add_argument("--show-secrets", action="store_true",
                   help="print session passwords, auth data and SASL tokens")
    p.add_argument("--port", type=int, action="append", metavar="PORT",
                   help="a ZooKeeper server port (repeatable; default: told by the traffic)")
    p.add_argument("--max-buffer", type=int, default=0xFFFFF, metavar="BYTES",
                   help="the server's jute.maxbuffer (default 1048575)")
    p.add_argument("--slow-ping", type=float, default=500.0, metavar="MS",
                   help="a ping slower than this is a finding (default 500)")
    p.add_argument("--findings-only", action="store_true", help="print only the findings")


def cmd_decode(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """Decode the capture named by ``args.capture``; return the exit code."""
    json_mode = bool(getattr(args, "json", False))
    options = DecodeOptions(server_ports=frozenset(args.port or ()),
                            max_buffer=args.max_buffer, slow_ping_ms=args.slow_ping)
    write = sys.stdout.write
    secrets = bool(args.show_secrets)
    quiet = bool(args.summary)
    only_findings = bool(args.findings_only)
    # the text timeline is grouped per connection, so it is printed once the capture is
    # read; --follow, --json and --findings-only stream in capture order
    grouped = not (quiet or json_mode or only_findings or args.follow)

    def show(item: Frame | Finding) -> None:
        if quiet or grouped:
            return
        if isinstance(item, Finding):
            write((finding_json(item) if json_mode else finding_line(item)) + "\n")
        elif not only_findings:
            write((frame_json(item, secrets) if json_mode else frame_line(item, secrets))
                  + "\n")
        if args.follow:
            sys.stdout.flush()

    stream: BinaryIO
    try:
        stream = sys.stdin.buffer if args.capture == "-" else open(args.capture, "rb")
    except OSError as exc:
        sys.stderr.write(f"zkwarden decode: cannot read {args.capture}: "
                         f"{exc.strerror or exc}\n")
        return exitcodes.ERROR
    try:
        with stream:
            result = decode_stream(stream, options, sink=show, keep=quiet or grouped)
    except CaptureError as exc:
        sys.stderr.write(f"zkwarden decode: {args.capture}: {exc}\n")
        return exitcodes.USAGE
    except OSError as exc:
        sys.stderr.write(f"zkwarden decode: error reading {args.capture}: {exc}\n")
        return exitcodes.ERROR
    if grouped:
        for line in timeline_lines(result.frames, result.findings, result.connections,
                                   secrets):
            write(line + "\n")
    elif quiet and json_mode:
        for record in summary_records(result.frames, result.findings, result.connections):
            write(json.dumps(record, separators=(",", ":")) + "\n")
    elif quiet:
        write("\n".join(summary_lines(result.frames, result.findings, result.connections))
              + "\n")
    for note in result.stats.notes:
        sys.stderr.write(f"zkwarden decode: note: {note}\n")
    return exitcodes.OK
