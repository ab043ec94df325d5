"""The agent's TOML configuration: parsing and validation.

Every problem is reported as one :class:`~zkwarden.errors.ConfigurationError` whose message
names the file and the offending key, e.g.::

    agent.toml: service[1].check.interval: must be a duration > 0 like "10s", got "soon"

Unknown keys are errors too, so a typo never silently falls back to a default. Durations
are a number of seconds or a string with a unit (``"250ms"``, ``"10s"``, ``"2m"``,
``"1h"``). The parsed configuration is a tree of frozen dataclasses: two configurations
compare equal exactly when they would run the same agent, which is what a reload diffs.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import paths as _paths
from ..discovery import ServiceInstance, get_format
from ..errors import ConfigurationError, ZooKeeperError
from ..hosts import parse_connect_string
from ..sasl import SASLOptions
from ..types import ACL, Id, Perms
from ._toml import Reader as _Reader
from ._toml import parse_duration
from ._toml import show as _show

__all__ = (
    "AgentConfig",
    "ZooKeeperConfig",
    "TLSConfig",
    "AgentSettings",
    "LogConfig",
    "ServiceConfig",
    "CheckConfig",
    "CheckType",
    "load_config",
    "parse_config",
    "parse_duration",
    "DEFAULT_LISTEN",
)

CheckType = Literal["http", "tcp", "command", "none"]

#: Where the HTTP API listens unless ``[agent] listen`` says otherwise.
DEFAULT_LISTEN = "127.0.0.1:8731"

# The largest session timeout the wire can carry (int32 milliseconds), and the bound the
# client puts on every other timeout.
_MAX_SESSION_MS = 2**31 - 1
_MAX_TIMEOUT = 1e9


# --- the configuration tree ----------------------------------------------------------------


@dataclass(frozen=True)
class TLSConfig:
    """TLS to ZooKeeper: CA bundle, optional client certificate, hostname checking."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True


@dataclass(frozen=True)
class ZooKeeperConfig:
    """``[zookeeper]``: how to reach the ensemble and where the registry lives."""

    hosts: str = "127.0.0.1:2181"
    session_timeout: float = 10.0
    connect_timeout: float | None = None
    auth: tuple[tuple[str, str], ...] = ()
    base_path: str | None = None
    format: str = "curator"
    tls: TLSConfig | None = None
    #: ``[zookeeper.sasl]``: the password only from ``password_file`` or ``password_env``.
    sasl: SASLOptions | None = None
    #: ``acl = ["sasl:alice:cdrwa", "world:anyone:r"]``: the ACL of the registry's nodes
    #: (None: the client's default, open).
    acl: tuple[ACL, ...] | None = None


@dataclass(frozen=True)
class AgentSettings:
    """``[agent]``: the local side (HTTP API, snapshot, shutdown, watched services)."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8731
    snapshot_dir: str | None = None
    shutdown_timeout: float = 10.0
    watch: tuple[str, ...] = ()
    watch_on_demand: bool = True
    max_wait: float = 600.0
    max_on_demand: int = 256
    on_demand_idle: float = 300.0
    #: A ``listen`` address other than loopback needs this (and logs a warning).
    allow_remote: bool = False
    #: A file holding the bearer token every API request must present (none: no auth).
    token_file: str | None = None
    #: Also (or, with ``listen = "none"``, only) serve the API on this Unix socket.
    unix_socket: str | None = None


@dataclass(frozen=True)
class LogConfig:
    """``[log]``: level and line format (``text`` key=value or ``json``)."""

    level: str = "info"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class CheckConfig:
    """``[service.check]``: how the agent decides an instance is healthy.

    ``type`` ``none`` (the default when a service has no check) means "registered while
    the agent runs".
    """

    type: CheckType = "none"
    interval: float = 10.0
    timeout: float = 2.0
    rise: int = 2
    fall: int = 3
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    tls_skip_verify: bool = False
    host: str | None = None
    port: int | None = None
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceConfig:
    """``[[service]]``: one local service instance to register."""

    name: str
    id: str
    address: str
    port: int | None = None
    ssl_port: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    weight: int | None = None
    zone: str | None = None
    tags: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    enabled: bool = True
    uri_spec: str | None = None
    check: CheckConfig = field(default_factory=CheckConfig)

    @property
    def key(self) -> tuple[str, str]:
        """``(name, id)``: the identity of the registration."""
        return (self.name, self.id)

    def instance(self, registration_time: float | None = None) -> ServiceInstance:
        """The :class:`ServiceInstance` this entry registers.

        Raises:
            ConfigurationError: a field is invalid (already checked by :func:`parse_config`).
        """
        extra: dict[str, Any] = {}
        if registration_time is not None:
            extra["registration_time"] = registration_time
        return ServiceInstance(
            name=self.name,
            id=self.id,
            address=self.address,
            port=self.port,
            ssl_port=self.ssl_port,
            payload=dict(self.payload),
            weight=self.weight,
            zone=self.zone,
            tags=self.tags,
            metadata=dict(self.metadata),
            enabled=self.enabled,
            uri_spec=self.uri_spec,
            **extra,
        )

    def same_registration(self, other: ServiceConfig) -> bool:
        """True when ``other`` registers exactly the same instance (checks aside)."""
        return self.instance(0.0) == other.instance(0.0)


@dataclass(frozen=True)
class AgentConfig:
    """The whole agent configuration (see ``docs/agent.md`` for a sample file)."""

    zookeeper: ZooKeeperConfig = field(default_factory=ZooKeeperConfig)
    agent: AgentSettings = field(default_factory=AgentSettings)
    log: LogConfig = field(default_factory=LogConfig)
    services: tuple[ServiceConfig, ...] = ()
    source: str = field(default="<config>", compare=False)


def _parse_listen(r: _Reader) -> tuple[str, int]:
    text = r.text("listen", DEFAULT_LISTEN)
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise r.fail("listen", f'must be "host:port" (port 0..65535), got {_show(text)}')
    return host or "0.0.0.0", int(port_text)


# --- sections ---------------------------------------------------------------------------------


def _zookeeper(r: _Reader) -> ZooKeeperConfig:
    hosts = r.text("hosts", "127.0.0.1:2181", env=True)
    try:
        parse_connect_string(hosts)
    except ZooKeeperError as exc:
        raise r.fail("hosts", str(exc)) from None
    session_timeout = r.duration("session_timeout", 10.0)
    if session_timeout * 1000 > _MAX_SESSION_MS:
        # The wire carries it as int32 milliseconds; the client would never connect.
        raise r.fail(
            "session_timeout",
            f"must be at most {_MAX_SESSION_MS / 1000} s (int32 milliseconds on the wire), "
            f"got {_show(r.table['session_timeout'])}",
        )
    connect_timeout = r.duration("connect_timeout", None)
    if connect_timeout is not None and connect_timeout >= _MAX_TIMEOUT:
        raise r.fail(
            "connect_timeout",
            f"must be less than {_MAX_TIMEOUT:g} s, got {_show(r.table['connect_timeout'])}",
        )
    auth: list[tuple[str, str]] = []
    raw_auth = r.raw("auth", [])
    if not isinstance(raw_auth, list):
        raise r.fail("auth", 'must be a list of {scheme = "digest", credentials = "user:pw"}')
    for i, entry in enumerate(raw_auth):
        if not isinstance(entry, dict):
            raise r.fail(f"auth[{i}]", 'must be a table {scheme = "...", credentials = "..."}')
        a = _Reader(r.source, entry, r.key(f"auth[{i}]"))
        auth.append((a.text("scheme"), a.text("credentials", empty=True, env=True)))
        a.done()
    fmt = r.text("format", "curator")
    try:
        registry_format = get_format(fmt)
    except ZooKeeperError as exc:
        raise r.fail("format", str(exc)) from None
    base_path = r.text("base_path", None)
    if base_path is not None:
        try:
            _paths.validate(base_path)
        except ZooKeeperError as exc:
            raise r.fail("base_path", str(exc)) from None
    else:
        base_path = registry_format.default_base_path
    tls: TLSConfig | None = None
    raw_tls = r.raw("tls", None)
    if raw_tls is True:
        tls = TLSConfig()
    elif isinstance(raw_tls, dict):
        t = _Reader(r.source, raw_tls, r.key("tls"))
        tls = TLSConfig(
            ca_file=t.text("ca_file", None),
            cert_file=t.text("cert_file", None),
            key_file=t.text("key_file", None),
            check_hostname=t.flag("check_hostname", True),
        )
        if tls.key_file is not None and tls.cert_file is None:
            raise t.fail("key_file", "needs cert_file as well")
        t.done()
    elif raw_tls not in (None, False):
        raise r.fail("tls", f"must be true, false or a table, got {_show(raw_tls)}")
    sasl = _sasl(r.sub("sasl")) if r.raw("sasl", None) is not None else None
    acl = _acl(r) if r.raw("acl", None) is not None else None
    r.done()
    return ZooKeeperConfig(
        hosts=hosts,
        session_timeout=session_timeout,
        connect_timeout=connect_timeout,
        auth=tuple(auth),
        base_path=base_path,
        format=fmt,
        tls=tls,
        sasl=sasl,
        acl=acl,
    )


_PERM_LETTERS = {"c": Perms.CREATE, "d": Perms.DELETE, "r": Perms.READ, "w": Perms.WRITE,
                 "a": Perms.ADMIN}


def _acl(r: _Reader) -> tuple[ACL, ...]:
    """``[zookeeper] acl``: a non-empty list of ``"scheme:id:perms"`` (zkCli's syntax)."""
    raw = r.raw("acl")
    if not isinstance(raw, list) or not raw:
        raise r.fail("acl", 'must be a non-empty list like ["sasl:alice:cdrwa"], '
                            f"got {_show(raw)}")
    entries: list[ACL] = []
    for i, spec in enumerate(raw):
        where = f"acl[{i}]"
        if not isinstance(spec, str):
            raise r.fail(where, f"must be a string scheme:id:perms, got {_show(spec)}")
        scheme, _, rest = spec.partition(":")
        ident, sep, letters = rest.rpartition(":")
        if not scheme or not sep:
            raise r.fail(where, f"must be scheme:id:perms (e.g. sasl:alice:cdrwa), got "
                                f"{_show(spec)}")
        perms = 0
        for letter in letters.lower():
            if letter not in _PERM_LETTERS:
                raise r.fail(where, f"unknown permission {letter!r} (use the letters c d r w a)")
            perms |= _PERM_LETTERS[letter]
        if not perms:
            raise r.fail(where, "grants no permission")
        entries.append(ACL(perms, Id(scheme, ident)))
    return tuple(entries)


def _sasl(r: _Reader) -> SASLOptions:
    """``[zookeeper.sasl]``. A password is never written in the file itself."""
    if "password" in r.table:
        raise r.fail("password", "is not accepted here: use password_file (or password_env)")
    fields = {name: r.text(name, None) for name in (
        "mechanism", "username", "password_file", "password_env", "service", "server_name",
        "realm", "principal", "keytab")}
    r.done()
    try:
        options = SASLOptions(**{k: v for k, v in fields.items() if v is not None})
    except ConfigurationError as exc:
        raise ConfigurationError(f"{r.source}: {r.where}: {exc}") from None
    if options.password_file is not None and not os.access(options.password_file, os.R_OK):
        raise r.fail("password_file", f"cannot read {_show(options.password_file)}")
    return options


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _agent(r: _Reader, base_dir: str) -> AgentSettings:
    host, port = _parse_listen(r)
    allow_remote = r.flag("allow_remote", False)
    if not allow_remote and not _is_loopback(host):
        raise r.fail("listen", f"{_show(host)} is not a loopback address: the API would be "
                               "reachable from other hosts; set allow_remote = true to mean it")
    token_file = r.text("token_file", None)
    if token_file is not None:
        token_file = os.path.join(base_dir, os.path.expanduser(token_file))
    unix_socket = r.text("unix_socket", None)
    if unix_socket is not None:
        unix_socket = os.path.join(base_dir, os.path.expanduser(unix_socket))
        if len(os.fsencode(unix_socket)) > 100:
            raise r.fail("unix_socket", "path longer than 100 bytes (the socket limit)")
    snapshot_dir = r.text("snapshot_dir", None)
    if snapshot_dir is not None:
        snapshot_dir = os.path.join(base_dir, os.path.expanduser(snapshot_dir))
    shutdown_timeout = r.duration("shutdown_timeout", 10.0)
    watch = r.str_list("watch")
    for i, name in enumerate(watch):
        _check_name(r, f"watch[{i}]", name)
    if len(set(watch)) != len(watch):
        raise r.fail("watch", "lists a service twice")
    on_demand = r.flag("watch_on_demand", True)
    max_wait = r.duration("max_wait", 600.0)
    max_on_demand = r.integer("max_on_demand", 256, low=0, high=100_000)
    on_demand_idle = r.duration("on_demand_idle", 300.0)
    r.done()
    return AgentSettings(
        listen_host=host,
        listen_port=port,
        snapshot_dir=snapshot_dir,
        shutdown_timeout=shutdown_timeout,
        watch=watch,
        watch_on_demand=on_demand,
        max_wait=max_wait,
        allow_remote=allow_remote,
        token_file=token_file,
        unix_socket=unix_socket,
        max_on_demand=max_on_demand,
        on_demand_idle=on_demand_idle,
    )


def _log(r: _Reader) -> LogConfig:
    level = r.text("level", "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise r.fail("level", f"must be debug, info, warning or error, got {_show(level)}")
    fmt = r.text("format", "text")
    if fmt not in ("text", "json"):
        raise r.fail("format", f'must be "text" or "json", got {_show(fmt)}')
    r.done()
    return LogConfig(level=level, format=fmt)


def _check_name(r: _Reader, key: str, name: str) -> None:
    try:
        ServiceInstance(name=name)
    except ConfigurationError as exc:
        raise r.fail(key, str(exc)) from None


def _check(r: _Reader, address: str, port: int | None) -> CheckConfig:
    if not r.table:
        return CheckConfig()
    kind = r.text("type")
    if kind not in ("http", "tcp", "command", "none"):
        raise r.fail("type", f'must be "http", "tcp", "command" or "none", got {_show(kind)}')
    interval = r.duration("interval", 10.0)
    timeout = r.duration("timeout", min(2.0, interval))
    rise = r.integer("rise", 2, low=1, high=1000)
    fall = r.integer("fall", 3, low=1, high=1000)
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    skip_verify = False
    host: str | None = None
    check_port: int | None = None
    command: tuple[str, ...] = ()
    if kind == "http":
        url = r.text("url")
        if not re.match(r"https?://[^/\s]+", url):
            raise r.fail("url", f"must be an http:// or https:// URL, got {_show(url)}")
        raw_headers = r.raw("headers", {})
        if not isinstance(raw_headers, dict) or not all(
            isinstance(v, str) for v in raw_headers.values()
        ):
            raise r.fail("headers", "must be a table of strings")
        headers = tuple(sorted(raw_headers.items()))
        skip_verify = r.flag("tls_skip_verify", False)
    elif kind == "tcp":
        host = r.text("host", address)
        check_port = r.integer("port", port, low=1, high=65535)
        if check_port is None:
            raise r.fail("port", "is required (the service has no port)")
    elif kind == "command":
        raw = r.raw("command")
        if isinstance(raw, str):
            try:
                command = tuple(shlex.split(raw))
            except ValueError as exc:
                raise r.fail("command", f"cannot be split: {exc}") from None
        elif isinstance(raw, list) and all(isinstance(a, str) for a in raw):
            command = tuple(raw)
        else:
            raise r.fail("command", f"must be a string or a list of strings, got {_show(raw)}")
        if not command or not command[0]:
            raise r.fail("command", "must not be empty")
    r.done()
    return CheckConfig(
        type=kind,
        interval=interval,
        timeout=timeout,
        rise=rise,
        fall=fall,
        url=url,
        headers=headers,
        tls_skip_verify=skip_verify,
        host=host,
        port=check_port,
        command=command,
    )


def _service(r: _Reader, zk: ZooKeeperConfig) -> ServiceConfig:
    name = r.text("name")
    _check_name(r, "name", name)
    address = r.text("address", env=True)
    port = r.integer("port", None, low=0, high=65535)
    ssl_port = r.integer("ssl_port", None, low=0, high=65535)
    if port is None and "id" not in r.table:
        raise r.fail("id", "is required when the service has no port")
    sid = r.text("id", f"{address}:{port}", env=True)
    try:
        ServiceInstance(name="x", id=sid)
    except ConfigurationError as exc:
        raise r.fail("id", str(exc)) from None
    payload = r.raw("payload", {})
    if not isinstance(payload, dict):
        raise r.fail("payload", f"must be a table, got {_show(payload)}")
    try:
        ServiceInstance(name="x", payload=payload)
    except ConfigurationError as exc:
        raise r.fail("payload", str(exc)) from None
    weight = r.integer("weight", None, low=0)
    zone = r.text("zone", None, env=True)
    tags = r.str_list("tags")
    metadata = r.raw("metadata", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise r.fail("metadata", "must be a table of strings")
    enabled = r.flag("enabled", True)
    uri_spec = r.text("uri_spec", None, empty=True)
    if uri_spec is not None:
        try:
            ServiceInstance(name="x", uri_spec=uri_spec)
        except ConfigurationError as exc:
            raise r.fail("uri_spec", str(exc)) from None
    check = _check(r.sub("check"), address, port)
    r.done()
    svc = ServiceConfig(
        name=name,
        id=sid,
        address=address,
        port=port,
        ssl_port=ssl_port,
        payload=payload,
        weight=weight,
        zone=zone,
        tags=tags,
        metadata=metadata,
        enabled=enabled,
        uri_spec=uri_spec,
        check=check,
    )
    # The registry layout may not express every instance (rpcx/dubbo need an address and
    # a port): find out now, not at registration time.
    fmt = get_format(zk.format)
    try:
        instance = svc.instance()
        fmt.instance_path(zk.base_path or fmt.default_base_path, instance)
        fmt.encode(instance)
    except ZooKeeperError as exc:
        raise ConfigurationError(
            f"{r.source}: {r.where}: cannot be registered in the {zk.format} format: {exc}"
        ) from None
    return svc


# --- entry points -----------------------------------------------------------------------------


def parse_config(
    document: Mapping[str, Any], *, source: str = "<config>", base_dir: str = "."
) -> AgentConfig:
    """Validate a parsed TOML document into an :class:`AgentConfig`.

    Relative paths (``snapshot_dir``) are taken relative to ``base_dir``.

    Raises:
        ConfigurationError: the first problem found, naming ``source`` and the key.
    """
    top = _Reader(source, document, "")
    zk = _zookeeper(top.sub("zookeeper"))
    agent = _agent(top.sub("agent"), base_dir)
    log = _log(top.sub("log"))
    raw_services = top.raw("service", [])
    if not isinstance(raw_services, list):
        raise top.fail("service", "must be an array of tables ([[service]])")
    services: list[ServiceConfig] = []
    seen: dict[tuple[str, str], int] = {}
    for i, entry in enumerate(raw_services):
        if not isinstance(entry, dict):
            raise top.fail(f"service[{i}]", "must be a table")
        svc = _service(_Reader(source, entry, f"service[{i}]"), zk)
        if svc.key in seen:
            raise top.fail(
                f"service[{i}].id",
                f"{svc.name}/{svc.id} is already defined by service[{seen[svc.key]}]",
            )
        seen[svc.key] = i
        services.append(svc)
    top.done()
    return AgentConfig(zookeeper=zk, agent=agent, log=log, services=tuple(services), source=source)


def load_config(path: str) -> AgentConfig:
    """Read and validate the TOML file at ``path``.

    Raises:
        ConfigurationError: unreadable file, TOML syntax error, or a bad key (the message
            names the file and the key).
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(
        document, source=path, base_dir=os.path.dirname(os.path.abspath(path))
    )
