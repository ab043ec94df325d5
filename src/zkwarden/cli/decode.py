"""``zkwarden decode CAPTURE``: read ZooKeeper traffic from a pcap/pcapng capture.

Prints a timeline (one line per frame, findings inline), ``--json`` (one object per line
and per frame or finding), or ``--summary`` (per-session statistics). ``-`` reads the
capture from stdin, so ``tcpdump -i any -U -w - port 2181 | zkwarden decode -`` works live
(``--follow`` prints as frames arrive). Exit codes: 0 decoded (findings or not),
2 not a capture / bad usage, 1 the file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from typing import BinaryIO

from ..decode import CaptureError, DecodeOptions, Finding, Frame, decode_stream
from ..decode.render import finding_json, finding_line, frame_json, frame_line, summary_lines
from . import exitcodes
from .output import Output
from .session import Options

__all__ = ("add_arguments", "cmd_decode")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``zkwarden decode``."""
    p.add_argument("capture", help="a pcap or pcapng file ('-': read stdin)")
    p.add_argument("--summary", action="store_true",
                   help="per-session statistics instead of the timeline")
    p.add_argument("--follow", action="store_true",
                   help="print each frame as soon as it is decoded (live captures)")
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

    def show(item: Frame | Finding) -> None:
        if isinstance(item, Finding):
            if not quiet:
                write((finding_json(item) if json_mode else finding_line(item)) + "\n")
        elif not quiet and not only_findings:
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
            result = decode_stream(stream, options, sink=show, keep=quiet)
    except CaptureError as exc:
        sys.stderr.write(f"zkwarden decode: {args.capture}: {exc}\n")
        return exitcodes.USAGE
    except OSError as exc:
        sys.stderr.write(f"zkwarden decode: error reading {args.capture}: {exc}\n")
        return exitcodes.ERROR
    if quiet:
        lines = summary_lines(result.frames, result.findings, result.connections)
        if json_mode:
            import json

            write(json.dumps({"summary": lines}) + "\n")
        else:
            write("\n".join(lines) + "\n")
    for note in result.stats.notes:
        sys.stderr.write(f"zkwarden decode: note: {note}\n")
    return exitcodes.OK
