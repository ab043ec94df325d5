"""``zkwarden ensemble``: the members of a dynamic ensemble and how each is doing;
``ensemble add|remove`` change the membership (reconfig).

The membership comes from ``/zookeeper/config``, each member's mode, zxid and connection
count from its ``srvr`` four-letter word. ``srvr`` alone cannot tell a member from a
removed server (a removed one keeps serving and says ``follower``): only the config
says who is a member, so the view starts from it.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import Any

from .._aio.ensemble import EnsembleConfig, Member
from ..errors import ConfigurationError
from ..hosts import HostPort
from ..testing._fourlw import exchange_four_letter_word, refused_by_whitelist
from .output import Output
from .session import Options, connected

__all__ = ("add_arguments", "cmd_ensemble", "read_srvr")


def add_arguments(verb: Any, common: argparse.ArgumentParser) -> None:
    """Register ``ensemble`` and its ``add``/``remove`` sub-verbs (``verb`` makes a verb's
    parser; ``common`` holds the global options, accepted after the sub-verb too)."""
    p = verb("ensemble", "the ensemble's members: roles, modes, zxid lag, connections; "
             "add/remove members (reconfig)")
    sub = p.add_subparsers(dest="ensemble_command", metavar="ACTION", required=False,
                           parser_class=type(p))
    q = sub.add_parser("add", parents=[common], help="add members: server.N=host:quorum:election[:role];"
                       "clienthost:clientport (needs reconfigEnabled and a superuser)")
    q.add_argument("servers", nargs="+", metavar="SERVER_LINE")
    q.add_argument("--from-config", type=_version, default=-1, metavar="VERSION",
                   help="only if the config is at this version (hex, as printed)")
    q = sub.add_parser("remove", parents=[common], help="remove members by server id")
    q.add_argument("ids", nargs="+", type=int, metavar="ID")
    q.add_argument("--from-config", type=_version, default=-1, metavar="VERSION",
                   help="only if the config is at this version (hex, as printed)")


def _version(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a hex config version: {text!r}") from None


@dataclass
class MemberView:
    """One member as ``srvr`` sees it (None where the server did not answer)."""

    member: Member
    mode: str | None = None
    zxid: int | None = None
    connections: int | None = None
    error: str | None = None


def read_srvr(host: HostPort, timeout: float) -> dict[str, str]:
    """``srvr`` of one server as ``{key: value}`` (Mode, Zxid, Connections, ...).

    Raises:
        OSError: no connection or no reply within ``timeout``.
        ConfigurationError: the server refuses ``srvr`` (4lw whitelist).
    """
    text, _ = exchange_four_letter_word(host.host, host.port, "srvr", timeout)
    if refused_by_whitelist(text):
        raise ConfigurationError(f"{host} refuses srvr: add it to 4lw.commands.whitelist")
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return values


def _view(member: Member, timeout: float) -> MemberView:
    view = MemberView(member)
    address = member.client_address
    if address is None:
        view.error = "no client address in the config"
        return view
    try:
        values = read_srvr(address, timeout)
    except (OSError, ConfigurationError) as exc:
        view.error = str(exc) or type(exc).__name__
        return view
    view.mode = values.get("Mode")
    try:
        view.zxid = int(values["Zxid"], 16) if "Zxid" in values else None
        view.connections = int(values["Connections"]) if "Connections" in values else None
    except ValueError:
        view.error = "unreadable srvr reply"
    return view


def _to_json(config: EnsembleConfig, views: list[MemberView] | None) -> dict[str, Any]:
    top = max((v.zxid for v in views or [] if v.zxid is not None), default=None)
    members = []
    for i, m in enumerate(config.members):
        entry: dict[str, Any] = {
            "id": m.id, "role": m.role, "address": str(m.client_address or ""),
            "server": m.server_line,
        }
        if views is not None:
            v = views[i]
            entry.update({
                "mode": v.mode, "zxid": f"0x{v.zxid:x}" if v.zxid is not None else None,
                "zxid_lag": (top - v.zxid) if top is not None and v.zxid is not None else None,
                "connections": v.connections, "error": v.error,
            })
        members.append(entry)
    return {"version": f"0x{config.version:x}", "members": members}


def _print(out: Output, config: EnsembleConfig, views: list[MemberView] | None) -> None:
    data = _to_json(config, views)
    if out.json_mode:
        out.json(data)
        return
    out.line(f"config version {data['version']}: {len(config.participants)} participants, "
             f"{len(config.observers)} observers")
    if not config.members:
        out.line("no dynamic membership (a standalone server, or reconfig not in use)")
        return
    rows = [("ID", "ROLE", "ADDRESS", "MODE", "ZXID LAG", "CONNS")]
    for entry in data["members"]:
        lag = entry.get("zxid_lag")
        rows.append((
            str(entry["id"]), entry["role"], entry["address"],
            entry.get("error") and f"down ({entry['error']})" or str(entry.get("mode") or "-"),
            "-" if lag is None else str(lag),
            "-" if entry.get("connections") is None else str(entry["connections"]),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out.lines(["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
               for r in rows])
    leaders = [e for e in data["members"] if e.get("mode") == "leader"]
    if views is not None and len(leaders) != 1:
        out.note(f"warning: {len(leaders)} members report Mode: leader")


async def cmd_ensemble(args: argparse.Namespace, opts: Options, out: Output) -> int:
    """``ensemble``: show the members; ``ensemble add|remove``: reconfig, then show the
    new configuration. Errors (NoAuth, ReconfigDisabled, BadVersion for a stale
    ``--from-config`` ...) are reported by the dispatcher."""
    action = getattr(args, "ensemble_command", None)
    async with connected(opts) as zk:
        if action == "add":
            config = await zk.reconfig(joining=args.servers, from_config=args.from_config)
            _print(out, config, None)
            return 0
        if action == "remove":
            config = await zk.reconfig(leaving=args.ids, from_config=args.from_config)
            _print(out, config, None)
            return 0
        config = await zk.get_config()
    views = list(await asyncio.gather(
        *(asyncio.to_thread(_view, m, opts.timeout) for m in config.members)))
    _print(out, config, views)
    return 0
