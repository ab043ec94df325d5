"""The argument parser and the dispatcher: ``main(argv) -> exit code``.

Global options (``--hosts``, ``--session-timeout``, ``--timeout``, ``--auth``, ``--sasl-*``,
``--json``, ``-v``) are accepted before or after the verb. Every error becomes one line on stderr and
an exit code from :mod:`zkwarden.cli.exitcodes`; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import __version__
from ..discovery.formats import format_names
from ..errors import ConfigurationError, ZooKeeperError
from . import exitcodes
from .output import Output, configure_logging
from .session import DEFAULT_HOSTS, Options, options_from_args

__all__ = ("main", "build_parser")

Verb = Callable[[argparse.Namespace, Options, Output], "Awaitable[int] | int"]

_DESCRIPTION = """\
zkwarden: a ZooKeeper shell, service registration and discovery, a local server, and a
demo of all of it under real faults.

Start with `zkwarden demo`, or `zkwarden server` in one terminal and `zkwarden tree /`
in another."""


class _UsageError(Exception):
    """argparse reported bad usage (already printed)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so main() returns the code."""

    def error(self, message: str) -> Any:
        """Print the usage and raise instead of exiting."""
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: {message}")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    return value


def _common_options() -> _Parser:
    common = _Parser(add_help=False)
    group = common.add_argument_group("connection and output (before or after the verb)")
    sup = argparse.SUPPRESS
    group.add_argument(
        "--hosts", default=sup, metavar="HOST:PORT[,...][/chroot]",
        help=f"ZooKeeper connect string (default: $ZOOKEEPER_HOSTS, else {DEFAULT_HOSTS})",
    )
    group.add_argument("--session-timeout", type=_positive, default=sup, metavar="SECONDS",
                       help="session timeout to ask for (default 10)")
    group.add_argument("--timeout", type=_positive, default=sup, metavar="SECONDS",
                       help="how long to wait for a connection (default 10)")
    group.add_argument("--auth", action="append", default=sup, metavar="SCHEME:CREDENTIALS",
                       help="authenticate, e.g. digest:user:password (repeatable)")
    group.add_argument("--sasl-mechanism", default=sup, choices=("DIGEST-MD5", "GSSAPI"),
                       type=str.upper, help="SASL login (default DIGEST-MD5 with --sasl-user)")
    group.add_argument("--sasl-user", default=sup, metavar="NAME",
                       help="SASL user (GSSAPI: the principal; default the ticket cache's)")
    group.add_argument("--sasl-password-file", default=sup, metavar="FILE",
                       help="the SASL password, read from FILE (else $ZKWARDEN_SASL_PASSWORD)")
    # Taken only to be refused (without echoing it): otherwise argparse would read it as an
    # abbreviation of --sasl-password-file and print the password as a file name.
    group.add_argument("--sasl-password", default=sup, dest="sasl_password_given",
                       help=sup)
    group.add_argument("--json", action="store_true", default=sup,
                       help="machine-readable output (JSON; one object per line for streams)")
    group.add_argument("-v", "--verbose", action="count", default=sup,
                       help="show zkwarden's log (-v info, -vv debug)")
    return common


def _duration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=_positive, metavar="SECONDS",
                        help="stop by itself after SECONDS (as if interrupted)")


def _force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="allow writing under /zookeeper (ZooKeeper's own tree)")


def build_parser() -> argparse.ArgumentParser:
    """The ``zkwarden`` argument parser."""
    common = _common_options()
    parser = _Parser(
        prog="zkwarden", description=_DESCRIPTION, epilog=exitcodes.epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter, parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"zkwarden {__version__}")
    verbs = parser.add_subparsers(dest="command", metavar="VERB", required=True,
                                  parser_class=_Parser)

    def verb(name: str, help_text: str, **kw: Any) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=help_text, description=help_text, parents=[common],
                                epilog=exitcodes.epilog(),
                                formatter_class=argparse.RawDescriptionHelpFormatter, **kw)

    p = verb("ls", "list the children of a node")
    p.add_argument("path", nargs="?", default="/")
    p.add_argument("-R", "--recursive", action="store_true", help="every descendant, as paths")

    p = verb("get", "print a node's data")
    p.add_argument("path")
    p.add_argument("-s", "--stat", action="store_true", help="also print the node's Stat")
    p.add_argument("--raw", action="store_true",
                   help="the bytes exactly (no newline added after text data)")

    p = verb("set", "replace a node's data")
    p.add_argument("path")
    p.add_argument("data", nargs="?", help="the data ('-' reads stdin)")
    p.add_argument("-f", "--file", help="read the data from FILE ('-': stdin)")
    p.add_argument("--version", type=int, default=-1, dest="version",
                   help="only if the node is at this version")
    _force(p)

    p = verb("create", "create a node")
    p.add_argument("path")
    p.add_argument("data", nargs="?", help="the data ('-' reads stdin)")
    p.add_argument("-f", "--file", help="read the data from FILE ('-': stdin)")
    p.add_argument("-e", "--ephemeral", action="store_true",
                   help="ephemeral: held until this command is interrupted")
    p.add_argument("-s", "--sequence", action="store_true", help="append a sequence number")
    p.add_argument("-c", "--container", action="store_true", help="a container node")
    p.add_argument("-t", "--ttl", type=_positive, metavar="SECONDS",
                   help="a TTL node (server needs extendedTypesEnabled)")
    p.add_argument("-p", "--parents", action="store_true", help="create missing parents")
    p.add_argument("--acl", action="append", metavar="SCHEME:ID:PERMS",
                   help="ACL entry, e.g. world:anyone:r (repeatable; default world:anyone:cdrwa)")
    _duration(p)
    _force(p)

    p = verb("rm", "delete nodes")
    p.add_argument("paths", nargs="+", metavar="path")
    p.add_argument("-r", "--recursive", action="store_true", help="delete whole subtrees")
    p.add_argument("--version", type=int, default=-1, dest="version",
                   help="only if the node is at this version")
    _force(p)

    p = verb("stat", "print a node's Stat")
    p.add_argument("path")

    p = verb("tree", "print a subtree, indented, with data sizes and child counts")
    p.add_argument("path", nargs="?", default="/")
    p.add_argument("-d", "--depth", type=int, help="stop after DEPTH levels")
    p.add_argument("--max-nodes", type=int, default=10000, help="read at most N nodes")

    p = verb("watch", "print a node's events until Ctrl-C (survives reconnects)")
    p.add_argument("path")
    p.add_argument("-r", "--recursive", action="store_true", help="the whole subtree")
    p.add_argument("--data", action="store_true", help="print the data of created/changed nodes")
    _duration(p)

    p = verb("acl", "get or set a node's ACL")
    acl_verbs = p.add_subparsers(dest="acl_command", metavar="get|set", required=True,
                                 parser_class=_Parser)
    q = acl_verbs.add_parser("get", help="print the ACL", parents=[common])
    q.add_argument("path")
    q = acl_verbs.add_parser("set", help="replace the ACL", parents=[common])
    q.add_argument("path")
    q.add_argument("acl", nargs="+", metavar="SCHEME:ID:PERMS",
                   help="e.g. world:anyone:r auth::cdrwa digest:user:HASH:cdrwa ip:10.0.0.1:rw")
    q.add_argument("--version", type=int, default=-1, dest="version",
                   help="only if the ACL is at this version")
    _force(q)

    verb("whoami", "print this connection's identities (ZooKeeper >= 3.7)")

    p = verb("mntr", "print a server's monitoring metrics")
    p.add_argument("servers", nargs="*", metavar="HOST:PORT",
                   help="servers to ask (default: every server of --hosts)")

    from .ensemble import add_arguments as ensemble_arguments

    ensemble_arguments(verb, common)

    p = verb("server", "run a real local ZooKeeper (or ensemble) in the foreground")
    p.add_argument("--port", type=int, default=2181,
                   help="client port (members of an ensemble: PORT, PORT+1, ...)")
    p.add_argument("--ensemble", type=int, default=1, metavar="N", help="run N servers")
    p.add_argument("--tick-time", type=float, default=0.2, metavar="SECONDS",
                   help="ZooKeeper tickTime (default 0.2; sessions 2-300 ticks)")
    p.add_argument("--data-dir", help="keep the data in DIR (single server only)")
    _duration(p)

    formats = list(format_names())
    p = verb("register", "register a service instance until interrupted, then unregister")
    p.add_argument("name")
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--format", choices=formats, default="curator")
    p.add_argument("--base-path", help="registry root (default: the format's)")
    p.add_argument("--payload", metavar="JSON", help="a JSON object (curator payload)")
    p.add_argument("--id", help="instance id (default: a new UUID)")
    p.add_argument("--ssl-port", type=int)
    p.add_argument("--weight", type=int)
    p.add_argument("--zone")
    p.add_argument("--tag", action="append", help="repeatable")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE",
                   help="metadata (repeatable; rpcx/dubbo parameters)")
    _duration(p)

    p = verb("discover", "list services, or the instances of one (--watch: live view)")
    p.add_argument("name", nargs="?")
    p.add_argument("--watch", action="store_true", help="a live view that updates in place")
    p.add_argument("--format", choices=formats, default="curator")
    p.add_argument("--base-path", help="registry root (default: the format's)")
    _duration(p)

    from .decode import add_arguments as decode_arguments

    decode_arguments(verb("decode", "read ZooKeeper traffic from a pcap/pcapng capture"))

    from .recipes import add_leader_arguments, add_lock_arguments

    add_lock_arguments(verb("lock", "run a command while holding a lock (a job that must "
                                    "not run twice): zkwarden lock PATH -- COMMAND..."))
    add_leader_arguments(verb("leader", "show a leader latch's or election's participants "
                                        "and its leader"))

    verbs.add_parser(
        "agent", add_help=False,
        help="the sidecar: `zkwarden agent -c agent.toml` (needs the agent extra; "
             "`zkwarden agent --help`)",
    )

    p = verb("demo", "replay the incidents zkwarden exists for, against a real ZooKeeper")
    p.add_argument("--quick", action="store_true",
                   help="a smaller fleet and shorter faults (about 30 s)")
    p.add_argument("--instances", type=int, help="fleet size (default 50; quick 10)")
    p.add_argument("--clients", type=int, help="registering clients (default 5; quick 2)")
    p.add_argument("--caches", type=int, help="watching caches (default 5; quick 2)")
    return parser


def _verb_for(args: argparse.Namespace) -> Verb:
    from . import overview, server, services, shell, watch

    if args.command == "acl":
        return shell.cmd_acl_get if args.acl_command == "get" else shell.cmd_acl_set
    if args.command == "decode":
        from .decode import cmd_decode

        return cmd_decode
    if args.command in ("lock", "leader"):
        from .recipes import cmd_leader, cmd_lock

        return cmd_lock if args.command == "lock" else cmd_leader
    if args.command == "ensemble":
        from .ensemble import cmd_ensemble

        return cmd_ensemble
    if args.command == "demo":
        from .demo import cmd_demo

        return cmd_demo
    table: dict[str, Verb] = {
        "ls": shell.cmd_ls,
        "get": shell.cmd_get,
        "set": shell.cmd_set,
        "create": shell.cmd_create,
        "rm": shell.cmd_rm,
        "stat": shell.cmd_stat,
        "tree": overview.cmd_tree,
        "mntr": overview.cmd_mntr,
        "whoami": shell.cmd_whoami,
        "watch": watch.cmd_watch,
        "server": server.cmd_server,
        "register": services.cmd_register,
        "discover": services.cmd_discover,
    }
    return table[args.command]


def _run(verb: Verb, args: argparse.Namespace, opts: Options, out: Output) -> int:
    result = verb(args, opts, out)
    if isinstance(result, int):
        return result

    async def runner() -> int:
        return await result

    return asyncio.run(runner())


def _agent(argv: list[str]) -> int:
    """``zkwarden agent ...``: hand the rest of the command line to the sidecar."""
    try:
        from ..agent.daemon import main as agent_main
    except ImportError as exc:
        sys.stderr.write(
            f"zkwarden: error: `zkwarden agent` needs the agent extra "
            f"(pip install 'zkwarden[agent]'): {exc}\n"
        )
        return exitcodes.USAGE
    try:
        return agent_main(argv)
    except KeyboardInterrupt:
        return exitcodes.INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zkwarden`` command with ``argv`` (default: ``sys.argv[1:]``); return the
    exit code (see :mod:`zkwarden.cli.exitcodes`)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["agent"]:
        return _agent(arguments[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(arguments)
    except _UsageError as exc:
        sys.stderr.write(f"{exc}\n")
        sys.stderr.flush()
        return exitcodes.USAGE
    except SystemExit as exc:  # --help, --version
        return exc.code if isinstance(exc.code, int) else exitcodes.OK
    json_mode = bool(getattr(args, "json", False))
    out = Output(json_mode)
    try:
        opts = options_from_args(args)
    except ConfigurationError as exc:
        return out.error(exc)
    with configure_logging(opts.verbose):
        try:
            return _run(_verb_for(args), args, opts, out)
        except (KeyboardInterrupt, asyncio.CancelledError):
            return out.interrupted()
        except (ZooKeeperError, OSError) as exc:
            return out.error(exc)
        except Exception as exc:  # a bug: still one line, never a traceback
            return out.error(exc, code=exitcodes.ERROR)
