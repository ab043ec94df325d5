"""Verbs that look at a whole tree or a whole server: ``tree`` and ``mntr``."""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from .. import paths as _paths
from .._aio.client import AsyncClient
from ..errors import ConfigurationError, NoNodeError, ZooKeeperError
from ..hosts import HostPort, parse_connect_string
from ..testing._errors import FourLetterWordError
from ..testing._fourlw import exchange_four_letter_word, parse_mntr, refused_by_whitelist
from ..types import Stat
from .exitcodes import UnreachableError
from .output import Output, human_size
from .session import Options, connected

__all__ = ("cmd_tree", "cmd_mntr", "TreeNode", "walk_tree", "read_mntr")

_CHUNK = 256


@dataclass
class TreeNode:
    """One node of a ``tree`` walk."""

    path: str
    stat: Stat
    children: list[TreeNode] = field(default_factory=list)
    #: children that exist but were not read (depth or node limit)
    hidden: int = 0

    @property
    def name(self) -> str:
        """The node's last path component (``/`` for the root)."""
        return self.path if self.path == "/" else _paths.basename(self.path)

    def totals(self) -> tuple[int, int]:
        """(nodes, bytes of data) in this subtree as read, this node included."""
        nodes, size = 1, self.stat.data_length
        for child in self.children:
            n, s = child.totals()
            nodes += n
            size += s
        return nodes, size


async def walk_tree(
    zk: AsyncClient, root: str, *, depth: int | None = None, max_nodes: int = 10000
) -> tuple[TreeNode, bool]:
    """Read the subtree at ``root`` level by level (pipelined); return it and whether it
    was cut short by ``max_nodes``.

    Raises:
        NoNodeError: ``root`` does not exist. Connection errors as the client's.
    """
    names, stat = await zk.get_children(root, include_stat=True)
    top = TreeNode(root, stat)
    pending: list[tuple[TreeNode, list[str]]] = [(top, sorted(names))]
    count = 1
    truncated = False
    level = 0
    while pending:
        if depth is not None and level >= depth:
            for node, kids in pending:
                node.hidden = len(kids)
            break
        paths: list[tuple[TreeNode, str]] = []
        for node, kids in pending:
            room = max(0, max_nodes - count - len(paths))
            take = kids[:room]
            node.hidden = len(kids) - len(take)
            truncated = truncated or node.hidden > 0
            paths.extend((node, _paths.join(node.path, k)) for k in take)
        next_pending: list[tuple[TreeNode, list[str]]] = []
        for start in range(0, len(paths), _CHUNK):
            chunk = paths[start : start + _CHUNK]
            results = await asyncio.gather(
                *(zk.get_children(p, include_stat=True) for _, p in chunk),
                return_exceptions=True,
            )
            for (parent, path), result in zip(chunk, results, strict=True):
                if isinstance(result, NoNodeError):
                    continue  # deleted while we walked
                if isinstance(result, BaseException):
                    raise result
                kids, kid_stat = result
                child = TreeNode(path, kid_stat)
                parent.children.append(child)
                next_pending.append((child, sorted(kids)))
        count += len(paths)
        pending = next_pending
        level += 1
    return top, truncated


def _describe(node: TreeNode) -> str:
    parts = [human_size(node.stat.data_length)]
    if node.stat.num_children:
        n = node.stat.num_children
        parts.append(f"{n} child" if n == 1 else f"{n} children")
        if node.children:
            nodes, size = node.totals()
            parts.append(f"{nodes - 1} below, {human_size(size - node.stat.data_length)}")
    if node.stat.ephemeral_owner:
        parts.append(f"ephemeral 0x{node.stat.ephemeral_owner & 0xFFFFFFFFFFFFFFFF:x}")
    return "  [" + ", ".join(parts) + "]"


def render_tree(top: TreeNode) -> list[str]:
    """The tree as indented lines with box-drawing guides."""
    lines = [top.path + _describe(top)]

    def walk(node: TreeNode, prefix: str) -> None:
        items: list[TreeNode | int] = [*node.children]
        if node.hidden:
            items.append(node.hidden)
        for i, item in enumerate(items):
            last = i == len(items) - 1
            branch = "└── " if last else "├── "
            if isinstance(item, int):
                lines.append(f"{prefix}{branch}… {item} more not shown")
                continue
            lines.append(f"{prefix}{branch}{item.name}{_describe(item)}")
            walk(item, prefix + ("    " if last else "│   "))

    walk(top, "")
    return lines


def tree_to_dict(node: TreeNode) -> dict[str, Any]:
    """The tree as nested JSON objects."""
    nodes, size = node.totals()
    doc: dict[str, Any] = {
        "path": node.path,
        "data_length": node.stat.data_length,
        "num_children": node.stat.num_children,
        "ephemeral_owner": node.stat.ephemeral_owner,
        "subtree_nodes": nodes,
        "subtree_bytes": size,
        "children": [tree_to_dict(c) for c in node.children],
    }
    if node.hidden:
        doc["not_shown"] = node.hidden
    return doc


async def cmd_tree(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``tree [PATH] [--depth N] [--max-nodes N]``: the subtree, indented, with data sizes,
    child counts and subtree totals."""
    root = _paths.validate(args.path)
    if args.depth is not None and args.depth < 0:
        raise ConfigurationError("--depth must be >= 0")
    if args.max_nodes < 1:
        raise ConfigurationError("--max-nodes must be >= 1")
    async with connected(opts) as zk:
        top, truncated = await walk_tree(zk, root, depth=args.depth, max_nodes=args.max_nodes)
    nodes, size = top.totals()
    if out.json_mode:
        doc = tree_to_dict(top)
        doc["truncated"] = truncated
        out.json(doc)
        return 0
    out.lines(render_tree(top))
    summary = f"{nodes} node{'s' if nodes != 1 else ''}, {human_size(size)} of data"
    if truncated:
        summary += f" (stopped at --max-nodes {args.max_nodes})"
    out.line(summary)
    return 0


# --- mntr -----------------------------------------------------------------------------------


def read_mntr(host: HostPort, timeout: float) -> dict[str, str]:
    """Send ``mntr`` to one server and parse the ``key<TAB>value`` reply.

    Raises:
        UnreachableError: no connection or no reply within ``timeout`` seconds.
        ZooKeeperError: the server refused (not whitelisted) or is not serving.
    """
    try:
        text, _ = exchange_four_letter_word(host.host, host.port, "mntr", timeout)
    except OSError as exc:
        raise UnreachableError(f"cannot reach {host}: {exc}") from exc
    if refused_by_whitelist(text):
        raise ZooKeeperError(
            f"{host} refuses mntr: add it to 4lw.commands.whitelist in zoo.cfg"
        )
    try:
        return parse_mntr(text)
    except FourLetterWordError:
        reply = text.strip() or "an empty reply"
        raise ZooKeeperError(f"{host} answered mntr with {reply!r} (not serving?)") from None


_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+(?:[eE][-+]?[0-9]+)?")


def mntr_value(text: str) -> int | float | str:
    """A ``mntr`` value as JSON should carry it: counts and latencies as numbers, the
    rest (version, server state) as the text it is. Never raises."""
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


async def cmd_mntr(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``mntr [HOST:PORT...]``: the monitoring metrics of each server (default: every
    server of --hosts)."""
    spec = ",".join(args.servers) if args.servers else opts.hosts
    hosts = list(parse_connect_string(spec).hosts)
    results = await asyncio.gather(
        *(asyncio.to_thread(read_mntr, h, opts.timeout) for h in hosts), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    metrics = {str(h): r for h, r in zip(hosts, results, strict=True) if isinstance(r, dict)}
    if out.json_mode:
        out.json({host: {k: mntr_value(v) for k, v in values.items()}
                  for host, values in metrics.items()})
        return 0
    for i, (host, values) in enumerate(metrics.items()):
        if len(metrics) > 1:
            if i:
                out.line()
            out.line(f"== {host}")
        width = max((len(k) for k in values), default=0)
        out.lines([f"{k:<{width}}  {v}" for k, v in values.items()])
    return 0

