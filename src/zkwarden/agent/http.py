"""The agent's local HTTP API (aiohttp).

=========================================  ==============================================
``GET /v1/services``                       services known: watched views (with counts,
                                           staleness, age, index) and, when connected,
                                           every name in the registry
``GET /v1/services/{name}``                the instances of a service, ``stale``, ``age``,
                                           ``index`` (also ``X-Zkwarden-Index``); ``tag``
                                           filters; ``?index=N&wait=30s`` blocks while the
                                           index is N; ``Accept: text/event-stream``
                                           streams every change (SSE)
``GET /v1/services/{name}/pick``           one instance chosen by ``strategy``
                                           (round_robin, random, weighted, sticky, zone;
                                           ``zone=``, ``tag=``)
``GET /v1/health``                         agent, ZooKeeper session, and each local check
``GET /metrics``                           Prometheus text format
=========================================  ==============================================

Exposure: the API listens on loopback unless ``[agent] allow_remote`` is set (a warning
is logged then); with ``[agent] token_file`` every request needs ``Authorization: Bearer
<token>`` (401 otherwise; compared in constant time); ``[agent] unix_socket`` serves it on
a Unix socket as well (mode 0660). No endpoint changes anything: every route is GET.

Responses are JSON (``application/json``); errors are ``{"error": "..."}`` with 400 (bad
query, or a service name longer than 200 characters), 404 (no such service, or not watched
and on-demand views off; an unknown route too), 405 (a method other than GET), 414/431
(an over-long URL or header: JSON too, from the protocol layer), 503 (no data yet, no
instance to pick, or every on-demand view busy).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import os
import random
import stat
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .._aio.client import AsyncClient
from ..discovery import ServiceDiscovery, ServiceInstance
from ..errors import ConfigurationError, NoInstancesError, ZooKeeperError
from ..sasl import read_secret_file
from .config import AgentConfig, parse_duration
from .logs import EventLog
from .metrics import CONTENT_TYPE_LATEST, AgentMetrics
from .views import MAX_NAME_LENGTH, ServiceView, Views

__all__ = ("ApiServer", "instance_json")

INDEX_HEADER = "X-Zkwarden-Index"
_DEFAULT_WAIT = 300.0
_LOAD_WAIT = 2.0
_NAMES_TIMEOUT = 2.0
_SSE_KEEPALIVE = 15.0

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_log = logging.getLogger("zkwarden.agent")
#: A presented token longer than this is refused before it is compared.
_MAX_TOKEN = 4096


def instance_json(inst: ServiceInstance) -> dict[str, Any]:
    """The JSON form of an instance in API responses."""
    doc: dict[str, Any] = {
        "name": inst.name,
        "id": inst.id,
        "address": inst.address,
        "port": inst.port,
        "ssl_port": inst.ssl_port,
        "weight": inst.weight,
        "zone": inst.zone,
        "tags": list(inst.tags),
        "metadata": dict(inst.metadata),
        "payload": inst.copy_payload(),
        "enabled": inst.enabled,
        "registration_time": inst.registration_time,
        "service_type": inst.service_type.value,
    }
    if inst.uri_spec is not None:
        doc["uri_spec"] = inst.uri_spec
        with contextlib.suppress(ZooKeeperError):
            doc["uri"] = inst.build_uri()
    return doc


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False, default=str),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _remove_stale_socket(path: str) -> None:
    """Remove the socket a previous run left at ``path``; anything else there stays (and
    binding fails), so a misconfigured path never deletes a file."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _no_view_yet(name: str, index: int) -> web.Response:
    return _json(
        {
            "error": f"no view of {name!r} yet: ZooKeeper is unreachable and there is "
            "no snapshot",
            "name": name,
            "stale": True,
            "index": index,
        },
        503,
        {INDEX_HEADER: str(index)},
    )


class _BadRequest(Exception):
    pass


class _JsonErrorHandler(RequestHandler):
    """aiohttp's protocol handler, answering requests it cannot parse (an over-long URL
    or header, a malformed request line) in JSON like every other error of the API,
    instead of aiohttp's plain text."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own handling logs the error and checks nothing was sent yet.
        super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            # The parser names what was too long: the request target (the URL; the
            # pure-Python parser gives the whole request line) or a header.
            line = exc.args[0] if exc.args else b""
            text = bytes(line).decode("latin-1") if isinstance(line, bytes | bytearray) else str(line)
            limit = exc.args[1] if len(exc.args) > 1 else "?"
            if text.startswith("/") or " /" in text[:16]:
                status, error = 414, f"URL longer than {limit} bytes"
            else:
                status, error = 431, f"request header longer than {limit} bytes"
        else:
            try:
                error = HTTPStatus(status).phrase
            except ValueError:
                error = "bad request"
            # Never echo the request back: a short reason only.
            reason = getattr(exc, "message", None)
            if isinstance(reason, str) and reason and len(reason) <= 120:
                error = f"{error}: {reason}"
        response = _json({"error": error}, status)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    """The low-level server, making :class:`_JsonErrorHandler` protocol handlers."""

    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    """An AppRunner whose server answers protocol-level errors in JSON."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # Same object, a subclass adding no state: only how handlers are made changes.
        server.__class__ = _JsonErrorServer
        return server


class ServedAgent(Protocol):
    """What the API serves from: the parts of :class:`~zkwarden.agent.runner.Agent` it
    reads. Described here because the agent owns the server (it imports this module)."""

    @property
    def config(self) -> AgentConfig: ...

    @property
    def metrics(self) -> AgentMetrics: ...

    @property
    def events(self) -> EventLog: ...

    @property
    def views(self) -> Views: ...

    @property
    def discovery(self) -> ServiceDiscovery: ...

    @property
    def connected(self) -> bool: ...

    @property
    def connecting_first_time(self) -> bool: ...

    @property
    def stopping(self) -> bool: ...

    def health(self) -> dict[str, Any]: ...

    async def service_exists(self, name: str) -> bool | None: ...

    @property
    def client(self) -> AsyncClient: ...

    def update_gauges(self) -> None: ...


class ApiServer:
    """Serves the API of ``agent`` on one address."""

    def __init__(self, agent: ServedAgent) -> None:
        self._agent = agent
        self._runner: web.AppRunner | None = None
        self._address: tuple[str, int] = ("", 0)
        self._token: bytes | None = None
        self.app = web.Application(middlewares=[self._count, self._authorize])
        self.app.router.add_get("/v1/services", self.list_services)
        self.app.router.add_get("/v1/services/{name}", self.get_service)
        self.app.router.add_get("/v1/services/{name}/pick", self.pick)
        self.app.router.add_get("/v1/health", self.health)
        self.app.router.add_get("/metrics", self.metrics)

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0: any free port), and on the configured Unix
        socket; read the bearer token file when one is configured.

        Raises:
            OSError: the address cannot be bound.
            ConfigurationError: the token file cannot be read, or a non-loopback address
                without ``allow_remote``.
        """
        settings = self._agent.config.agent
        if not _loopback(host):
            if not settings.allow_remote:
                raise ConfigurationError(
                    f"listen {host}:{port} is not loopback; set [agent] allow_remote = true")
            _log.warning("the agent's HTTP API listens on %s:%d, reachable from other hosts%s",
                         host, port, "" if settings.token_file else " with no token_file")
        if settings.token_file is not None:
            token = read_secret_file(settings.token_file, "API token")
            if len(token) < 16:
                raise ConfigurationError(
                    f"the API token in {settings.token_file!r} is shorter than 16 characters")
            self._token = token.encode()
        runner = _Runner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
            if settings.unix_socket is not None:
                _remove_stale_socket(settings.unix_socket)
                await web.UnixSite(runner, settings.unix_socket).start()
                os.chmod(settings.unix_socket, 0o660)
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            bound = sockets[0].getsockname()
            self._address = (str(bound[0]), int(bound[1]))
        else:  # pragma: no cover - aiohttp always has the socket
            self._address = (host, port)

    async def stop(self) -> None:
        """Stop listening; open requests get about a second to finish. Never raises."""
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()

    # --- middleware ------------------------------------------------------------------

    @web.middleware
    async def _authorize(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        token = self._token
        if token is None:
            return await handler(request)
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        given = presented.strip().encode("utf-8", "replace")[:_MAX_TOKEN + 1]
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, token):
            # Never say which part was wrong, never echo what was sent.
            return _json({"error": "unauthorized: a valid bearer token is required"}, 401,
                         {"WWW-Authenticate": 'Bearer realm="zkwarden-agent"'})
        return await handler(request)

    @web.middleware
    async def _count(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        code = 500
        try:
            response = await handler(request)
            code = response.status
            return response
        except web.HTTPException as exc:
            code = exc.status
            if code < 400:
                raise
            # aiohttp's own errors (no route, wrong method) in the API's JSON shape.
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            message = exc.reason
            if code == 404:
                message = f"no such endpoint: {request.path[:200]}"
            elif code == 405:
                message = f"method {request.method} not allowed (use GET)"
            return _json({"error": message}, code, headers)
        except _BadRequest as exc:
            code = 400
            return _error(400, str(exc))
        except Exception as exc:
            self._agent.events.limited(
                "http-error", logging.ERROR, "http_error",
                f"{request.method} {request.path} failed: {exc!r}", path=request.path,
            )
            return _error(500, f"internal error: {type(exc).__name__}")
        finally:
            self._agent.metrics.http_requests.labels(
                route=route, method=request.method, code=str(code)
            ).inc()

    # --- helpers ---------------------------------------------------------------------

    def _view_summary(self, view: ServiceView, now: float) -> dict[str, Any]:
        age = view.age(now)
        return {
            "instances": len(view.instances()),
            "stale": view.stale,
            "age": round(age, 3) if age is not None else None,
            "index": view.index,
            "loaded": view.loaded,
            "watched": view.pinned,
        }

    def _view_body(self, view: ServiceView, tags: list[str]) -> dict[str, Any]:
        age = view.age()
        return {
            "name": view.name,
            "index": view.index,
            "stale": view.stale,
            "age": round(age, 3) if age is not None else None,
            "updated_at": view.cache.updated_at,
            "instances": [instance_json(i) for i in view.instances(tags)],
        }

    async def _view(self, name: str) -> ServiceView | web.Response:
        agent = self._agent
        if len(name) > MAX_NAME_LENGTH:
            return _error(400, f"bad service name: longer than {MAX_NAME_LENGTH} characters")
        view = agent.views.get(name)
        if view is None:
            opened = await self._open_on_demand(name)
            if isinstance(opened, web.Response):
                return opened
            view = opened
        view.touch()
        if not view.loaded and (agent.connected or agent.connecting_first_time):
            # A new view, or the first session on its way: give the first read a moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_LOAD_WAIT):
                    index = view.index
                    while not view.loaded and not view.closed:
                        index = await view.changes(index)
        if not view.loaded:
            return _no_view_yet(name, view.index)
        return view

    async def _open_on_demand(self, name: str) -> ServiceView | web.Response:
        """An on-demand view of ``name``, only for a service that exists (or has a
        snapshot while ZooKeeper is unreachable): made-up names cost nothing."""
        agent = self._agent
        views = agent.views
        if not agent.config.agent.watch_on_demand:
            return _error(404, f"service {name!r} is not watched by this agent")
        try:
            agent.discovery.format.service_path(agent.discovery.base_path, name)
        except ZooKeeperError as exc:
            return _error(400, f"bad service name: {exc}")
        if not agent.connected and agent.connecting_first_time:
            # The first session is on its way: give it a moment rather than guess.
            with contextlib.suppress(ZooKeeperError):
                await agent.client.wait_connected(_LOAD_WAIT)
        exists = await agent.service_exists(name)
        if exists is False:
            return _json({"error": f"no service named {name!r} is registered", "name": name},
                         404)
        if exists is None and not views.has_snapshot(name):
            return _no_view_yet(name, 0)
        try:
            return await views.open(name, pinned=False)
        except LookupError:
            return _error(503, f"all {views.max_on_demand} on-demand views are in use; "
                               "add the service to [agent] watch")
        except ConfigurationError as exc:
            return _error(400, f"bad service name: {exc}")

    @staticmethod
    def _duration(request: web.Request, key: str) -> float | None:
        text = request.query.get(key)
        if text is None:
            return None
        try:
            return parse_duration(text)
        except ValueError:
            raise _BadRequest(f'{key} must be a duration like "30s", got {text!r}') from None

    @staticmethod
    def _index(request: web.Request) -> int | None:
        text = request.query.get("index")
        if text is None:
            return None
        if not text.isdigit():
            raise _BadRequest(f"index must be a non-negative integer, got {text!r}")
        return int(text)

    # --- handlers --------------------------------------------------------------------

    async def list_services(self, request: web.Request) -> web.Response:
        agent = self._agent
        now = time.time()
        services: dict[str, dict[str, Any]] = {
            v.name: self._view_summary(v, now) for v in agent.views.all()
        }
        complete = False
        if agent.connected:
            try:
                async with asyncio.timeout(_NAMES_TIMEOUT):
                    names = await agent.discovery.names()
                complete = True
            except (TimeoutError, ZooKeeperError):
                names = []
            for name in names:
                services.setdefault(name, {"instances": None, "watched": False})
        return _json(
            {
                "services": dict(sorted(services.items())),
                "stale": not complete,
                "zookeeper": {"connected": agent.connected},
            }
        )

    async def get_service(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        tags = request.query.getall("tag", [])
        index = self._index(request)
        wait = self._duration(request, "wait")
        found = await self._view(name)
        if isinstance(found, web.Response):
            return found
        view = found
        if "text/event-stream" in request.headers.get("Accept", ""):
            with view.in_use():
                return await self._stream(request, view, tags)
        if index is not None and index == view.index:
            limit = self._agent.config.agent.max_wait
            timeout = min(wait if wait is not None else _DEFAULT_WAIT, limit)
            timeout += random.uniform(0, timeout / 16)  # spread the herd of re-polls
            with view.in_use():
                await view.wait(index, timeout)
        return _json(self._view_body(view, tags), headers={INDEX_HEADER: str(view.index)})

    async def _stream(
        self, request: web.Request, view: ServiceView, tags: list[str]
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        last = request.headers.get("Last-Event-ID")
        sent = int(last) if last is not None and last.isdigit() else -1
        try:
            while not view.closed and not self._agent.stopping:
                if view.index != sent:
                    sent = view.index
                    data = json.dumps(self._view_body(view, tags), ensure_ascii=False, default=str)
                    await response.write(f"id: {sent}\nevent: view\ndata: {data}\n\n".encode())
                try:
                    async with asyncio.timeout(_SSE_KEEPALIVE):
                        await view.changes(sent)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
        except ConnectionResetError:
            pass  # the client went away
        return response

    async def pick(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        strategy = request.query.get("strategy", "round_robin")
        zone = request.query.get("zone") or None
        tags = tuple(request.query.getall("tag", []))
        found = await self._view(name)
        if isinstance(found, web.Response):
            return found
        view = found
        try:
            provider = view.provider(strategy, zone, tags)
        except ConfigurationError as exc:
            return _error(400, str(exc))
        try:
            instance = provider.get()
        except NoInstancesError as exc:
            return _json(
                {"error": str(exc), "stale": view.stale, "index": view.index},
                503,
                {INDEX_HEADER: str(view.index)},
            )
        return _json(
            {
                "instance": instance_json(instance),
                "strategy": strategy,
                "stale": view.stale,
                "index": view.index,
            },
            headers={INDEX_HEADER: str(view.index)},
        )

    async def health(self, request: web.Request) -> web.Response:
        body = self._agent.health()
        return _json(body, 503 if body["status"] == "stopping" else 200)

    async def metrics(self, request: web.Request) -> web.Response:
        self._agent.update_gauges()
        response = web.Response(body=self._agent.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
