"""The shell verbs: ls, get, set, create, rm, stat, acl, whoami (tree and mntr: overview.py).

Each verb is a coroutine ``(args, opts, out) -> exit code`` run by the dispatcher in
:mod:`zkwarden.cli.app`; errors propagate as zkwarden exceptions and become one line on
stderr and an exit code there.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import re
import sys
from typing import Any

from .. import paths as _paths
from .._aio.client import AsyncClient
from ..errors import ConfigurationError, NoNodeError
from ..types import ACL, Id, Perms
from .output import (
    Output,
    acl_to_dict,
    acl_to_text,
    format_stat,
    stat_to_dict,
)
from .session import Interrupt, Options, chroot_of, connected, run_until_interrupted

__all__ = (
    "cmd_ls",
    "cmd_get",
    "cmd_set",
    "cmd_create",
    "cmd_rm",
    "cmd_stat",
    "cmd_acl_get",
    "cmd_acl_set",
    "cmd_whoami",
    "parse_acl",
    "read_data",
)

_PERM_BITS = {
    "c": Perms.CREATE,
    "d": Perms.DELETE,
    "r": Perms.READ,
    "w": Perms.WRITE,
    "a": Perms.ADMIN,
}


def parse_acl(spec: str) -> ACL:
    """``scheme:id:perms`` (zkCli syntax: ``world:anyone:cdrwa``, ``auth::cdrwa``,
    ``digest:user:BASE64HASH:r``, ``ip:10.0.0.0/8:rw``, ``sasl:alice@REALM:r``,
    ``x509:CN=app,OU=ops:r``) → ACL.

    Raises:
        ConfigurationError: malformed entry or unknown permission letter.
    """
    scheme, sep, rest = spec.partition(":")
    ident, sep2, letters = rest.rpartition(":")
    if not sep or not sep2 or not scheme:
        raise ConfigurationError(f"an ACL is SCHEME:ID:PERMS (e.g. world:anyone:cdrwa), got {spec!r}")
    perms = 0
    for letter in letters.lower():
        bit = _PERM_BITS.get(letter)
        if bit is None:
            raise ConfigurationError(
                f"unknown permission {letter!r} in {spec!r} (use the letters c d r w a)"
            )
        perms |= bit
    if not perms:
        raise ConfigurationError(f"no permissions in ACL {spec!r}")
    return ACL(perms, Id(scheme, ident))


# Entries are comma separated, but an x509 DN has commas of its own (CN=a,OU=b): split
# only before something that starts a new SCHEME: (a DN's next part is KEY=, not KEY:).
_ACL_SEPARATOR = re.compile(r",(?=\s*[A-Za-z][A-Za-z0-9]*:)")


def _split_acls(specs: list[str]) -> list[ACL]:
    items = [part for spec in specs for part in _ACL_SEPARATOR.split(spec) if part.strip()]
    return [parse_acl(item.strip()) for item in items]


def read_data(value: str | None, file: str | None) -> bytes:
    """The data argument of set/create: text, ``-`` for stdin, or ``--file PATH``.

    Raises:
        ConfigurationError: both a value and --file were given.
        OSError: the file could not be read.
    """
    if file is not None:
        if value is not None:
            raise ConfigurationError("give the data either as an argument or with --file, not both")
        if file == "-":
            return sys.stdin.buffer.read()
        with open(file, "rb") as f:
            return f.read()
    if value == "-":
        return sys.stdin.buffer.read()
    return (value or "").encode("utf-8")


def _text_or_none(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


#: ZooKeeper's own subtree: the CLI does not write there without --force.
SYSTEM_TREE = "/zookeeper"


# --- verbs ---------------------------------------------------------------------------------


def refuse_system_tree(
    action: str, targets: list[str], args: argparse.Namespace, opts: Options
) -> None:
    """Refuse a write to ZooKeeper's own ``/zookeeper`` tree (quotas, the dynamic config)
    unless ``--force``; ``rm -r /zookeeper`` would otherwise delete what it can before the
    server refuses the rest. Under a chroot ``/zookeeper`` is an ordinary node.

    Raises:
        ConfigurationError: a target is /zookeeper or below it, without --force.
    """
    if getattr(args, "force", False) or chroot_of(opts.hosts):
        return
    for path in targets:
        if path == SYSTEM_TREE or path.startswith(SYSTEM_TREE + "/"):
            raise ConfigurationError(
                f"refusing to {action} {path}: {SYSTEM_TREE} is ZooKeeper's own tree "
                "(quotas, configuration); add --force if you really mean it"
            )


async def cmd_ls(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``ls [PATH] [-R]``: the children of PATH (with -R every descendant, as full paths)."""
    path = _paths.validate(args.path)
    async with connected(opts) as zk:
        if not args.recursive:
            children = sorted(await zk.get_children(path))
            if out.json_mode:
                out.json({"path": path, "children": children})
            else:
                out.lines(children)
            return 0
        found: list[str] = []
        level = [path]
        if await zk.exists(path) is None:
            raise NoNodeError(path=path)
        while level:
            results = await _gather_children(zk, level)
            next_level: list[str] = []
            for parent, names in results:
                for name in sorted(names):
                    child = _paths.join(parent, name)
                    found.append(child)
                    next_level.append(child)
            level = next_level
        found.sort()
        if out.json_mode:
            out.json({"path": path, "descendants": found})
        else:
            out.lines(found)
    return 0


async def _gather_children(zk: AsyncClient, parents: list[str]) -> list[tuple[str, list[str]]]:
    """Children of many nodes, pipelined in chunks; nodes deleted meanwhile are skipped."""
    out: list[tuple[str, list[str]]] = []
    for start in range(0, len(parents), 256):
        chunk = parents[start : start + 256]
        results = await asyncio.gather(
            *(zk.get_children(p) for p in chunk), return_exceptions=True
        )
        for parent, result in zip(chunk, results, strict=True):
            if isinstance(result, NoNodeError):
                continue
            if isinstance(result, BaseException):
                raise result
            out.append((parent, list(result)))
    return out


async def cmd_get(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``get PATH [--stat]``: the node's data (bytes unchanged), optionally its Stat."""
    path = _paths.validate(args.path)
    async with connected(opts) as zk:
        data, stat = await zk.get(path)
    if out.json_mode:
        doc: dict[str, Any] = {
            "path": path,
            "data": _text_or_none(data),
            "base64": base64.b64encode(data).decode("ascii"),
        }
        if args.stat:
            doc["stat"] = stat_to_dict(stat)
        out.json(doc)
        return 0
    out.raw(data)
    # Text gets its line ended, as zkCli and cat-like tools do (a prompt would otherwise
    # follow the data on the same line); binary data, or --raw, is written exactly.
    text = _text_or_none(data) is not None
    if data and not data.endswith(b"\n") and (
        out.is_tty or (text and not getattr(args, "raw", False)) or args.stat
    ):
        out.line()
    if args.stat:
        out.lines(format_stat(stat))
    return 0


async def cmd_set(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``set PATH [DATA] [--file F] [--version N]``: replace the node's data."""
    path = _paths.validate(args.path)
    refuse_system_tree("set", [path], args, opts)
    data = read_data(args.data, args.file)
    async with connected(opts) as zk:
        stat = await zk.set(path, data, version=args.version)
    if out.json_mode:
        out.json({"path": path, "stat": stat_to_dict(stat)})
    else:
        out.line(f"{path}: version {stat.version}, {stat.data_length} bytes")
    return 0


async def cmd_create(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``create PATH [DATA] [-e] [-s] [-c] [-t TTL] [-p] [--acl ACL]``.

    An ephemeral node lives as long as its session: the command holds the session (and
    the node) until it is interrupted, or for ``--duration`` seconds.
    """
    path = _paths.validate(args.path, sequential=args.sequence)
    refuse_system_tree("create", [path], args, opts)
    data = read_data(args.data, args.file)
    acl = _split_acls(args.acl) if args.acl else None
    async with connected(opts) as zk:
        created = await zk.create(
            path, data, ephemeral=args.ephemeral, sequence=args.sequence,
            container=args.container, ttl=args.ttl, acl=acl, makepath=args.parents,
        )
        if out.json_mode:
            out.json({"path": created, "ephemeral": args.ephemeral}, stream=args.ephemeral)
        else:
            out.line(created)
        if not args.ephemeral:
            return 0
        with Interrupt() as interrupt:
            if args.duration is None:
                out.note(f"holding ephemeral node {created} (session 0x{zk.session_id or 0:x});"
                         " Ctrl-C to release it")
            await run_until_interrupted(_forever, interrupt, duration=args.duration)
        if not out.json_mode:
            out.note(f"released {created}")
    return 0


async def _forever() -> None:
    await asyncio.Event().wait()


async def cmd_rm(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``rm PATH... [-r] [--version N]``: delete nodes (with -r whole subtrees)."""
    targets = [_paths.validate(p) for p in args.paths]
    if args.recursive and args.version != -1:
        raise ConfigurationError("--version cannot be combined with -r")
    refuse_system_tree("delete", targets, args, opts)
    deleted: list[str] = []
    async with connected(opts) as zk:
        for path in targets:
            if path == "/":
                raise ConfigurationError("refusing to delete /")
            if args.recursive and await zk.exists(path) is None:
                raise NoNodeError(path=path)
            await zk.delete(path, version=args.version, recursive=args.recursive)
            deleted.append(path)
    if out.json_mode:
        out.json({"deleted": deleted})
    else:
        out.lines([f"deleted {p}" for p in deleted])
    return 0


async def cmd_stat(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``stat PATH``: the node's Stat (exit 3 when it does not exist)."""
    path = _paths.validate(args.path)
    async with connected(opts) as zk:
        stat = await zk.exists(path)
    if stat is None:
        raise NoNodeError(path=path)
    if out.json_mode:
        out.json({"path": path, "stat": stat_to_dict(stat)})
    else:
        out.lines(format_stat(stat))
    return 0


async def cmd_acl_get(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``acl get PATH``: the node's ACL, one ``scheme:id:perms`` per line."""
    path = _paths.validate(args.path)
    async with connected(opts) as zk:
        acls, stat = await zk.get_acl(path)
    if out.json_mode:
        out.json({"path": path, "acl": [acl_to_dict(a) for a in acls], "aversion": stat.aversion})
    else:
        out.lines([acl_to_text(a) for a in acls])
    return 0


async def cmd_acl_set(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``acl set PATH ACL... [--version N]``: replace the node's ACL."""
    path = _paths.validate(args.path)
    acls = _split_acls(args.acl)
    if not acls:
        raise ConfigurationError("acl set needs at least one ACL entry")
    refuse_system_tree("set the ACL of", [path], args, opts)
    async with connected(opts) as zk:
        stat = await zk.set_acl(path, acls, version=args.version)
        current, _ = await zk.get_acl(path)
    if out.json_mode:
        out.json({"path": path, "acl": [acl_to_dict(a) for a in current],
                  "aversion": stat.aversion})
    else:
        out.lines([acl_to_text(a) for a in current])
    return 0


async def cmd_whoami(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``whoami``: the identities the server gave this connection (ZooKeeper >= 3.7)."""
    async with connected(opts) as zk:
        infos = await zk.whoami()
    if out.json_mode:
        out.json({"identities": [{"scheme": i.auth_scheme, "user": i.user} for i in infos]})
    else:
        out.lines([f"{i.auth_scheme}: {i.user}" for i in infos])
    return 0
