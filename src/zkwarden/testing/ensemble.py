"""A real ZooKeeper quorum on loopback ports, for tests.

Each member is a :class:`~zkwarden.testing.server.ZooKeeperServer` (one code path writes
``zoo.cfg``, starts the JVM and waits for it); this module only adds the quorum settings
(``server.N`` lines, ``myid``, initLimit/syncLimit) and the questions one asks of a quorum:
who leads, is there a quorum, take this member down, bring it back.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from zkwarden.errors import ConfigurationError

from ._errors import FourLetterWordError, QuorumError
from ._process import LOOPBACK, free_port
from .server import ZooKeeperServer

__all__ = ("ZooKeeperEnsemble",)


class ZooKeeperEnsemble:
    """``size`` real ZooKeeper servers forming one quorum on 127.0.0.1.

    Members are indexed from 0 (their ZooKeeper ``myid`` is index + 1).  Each member has
    its own client, quorum and election port, all free loopback ports, and keeps its data
    across :meth:`stop_member`/:meth:`start_member` until :meth:`stop`.

    ``init_limit`` and ``sync_limit`` are in seconds (converted to ticks) and generous so a
    loaded 2-core machine does not drop followers.  Other options are passed to every
    member, as for :class:`ZooKeeperServer`.  Usable as a context manager.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        tick_time: float = 0.1,
        init_limit: float = 10.0,
        sync_limit: float = 5.0,
        min_session_timeout: float | None = None,
        max_session_timeout: float | None = None,
        four_letter_words: str | Sequence[str] = "*",
        extended_types: bool = True,
        read_only_mode: bool = False,
        jvm_heap: str = "128m",
        extra_config: Mapping[str, str] | None = None,
        force_sync: bool = False,
        client_ports: Sequence[int] | None = None,
        reconfig: bool = False,
        observers: int = 0,
        superuser: tuple[str, str] | None = None,
    ) -> None:
        """Configure the ensemble; nothing starts until :meth:`start`.

        ``client_ports`` fixes the members' client ports (one per member); by default
        each gets a free port.

        ``reconfig=True`` makes a dynamic ensemble (``reconfigEnabled=true``,
        ``standaloneEnabled=false``, each ``server.N`` line carrying its client address):
        members can then be added (:meth:`add_member`) and removed (:meth:`remove_member`)
        with the client's ``reconfig``. 3.8 lets only a superuser reconfigure: pass
        ``superuser=(name, password)`` and authenticate with ``digest`` as that user
        (without it nobody may reconfigure: NoAuth). ``observers`` makes the last members
        observers (they serve reads and forward writes, but do not vote).

        Raises:
            ConfigurationError: ``size`` < 1, ``client_ports`` not one per member,
                ``observers`` leaves no voter, or another option is out of range.
        """
        if size < 1:
            raise ConfigurationError(f"an ensemble needs at least one member, got {size}")
        if init_limit <= 0 or sync_limit <= 0:
            raise ConfigurationError("init_limit and sync_limit must be positive")
        if client_ports is not None and len(client_ports) != size:
            raise ConfigurationError(f"client_ports needs {size} ports, got {len(client_ports)}")
        if not 0 <= observers < size:
            raise ConfigurationError(f"observers must leave a voter: {observers} of {size}")
        if observers and not reconfig:
            raise ConfigurationError("observers need reconfig=True (roles in server lines)")
        self.size = size
        self._lock = threading.RLock()
        self._dynamic = reconfig
        client_ports = (
            list(client_ports) if client_ports is not None else [free_port() for _ in range(size)]
        )
        #: per member: (quorum port, election port, client port, observer)
        self._ports = [
            (free_port(), free_port(), client_ports[i], i >= size - observers)
            for i in range(size)
        ]
        #: indexes of members removed from the configuration (see :meth:`remove_member`)
        self._removed: set[int] = set()
        quorum_config = {
            f"server.{i + 1}": self._server_spec(i) for i in range(size)
        }
        if reconfig:
            quorum_config["reconfigEnabled"] = "true"
            quorum_config["standaloneEnabled"] = "false"
        if superuser is not None:
            # Read by the server as the system property zookeeper.DigestAuthenticationProvider
            # .superDigest: "name:base64(sha1(name:password))".
            name, password = superuser
            digest = base64.b64encode(
                hashlib.sha1(f"{name}:{password}".encode()).digest()).decode()
            quorum_config["DigestAuthenticationProvider.superDigest"] = f"{name}:{digest}"
        quorum_config["initLimit"] = str(math.ceil(init_limit / tick_time))
        quorum_config["syncLimit"] = str(math.ceil(sync_limit / tick_time))
        # A peer that is down refuses connections at once on loopback; do not wait the
        # default 5 s connect timeout for one that hangs.
        quorum_config["cnxTimeout"] = "2000"
        quorum_config.update(extra_config or {})
        self._quorum_config = quorum_config
        # Everything but the per-member settings, for the members added later too.
        self._new_server = functools.partial(
            ZooKeeperServer, tick_time=tick_time, min_session_timeout=min_session_timeout,
            max_session_timeout=max_session_timeout, four_letter_words=four_letter_words,
            extended_types=extended_types, read_only_mode=read_only_mode, jvm_heap=jvm_heap,
            force_sync=force_sync,
        )
        self._members = [self._make_member(i, quorum_config) for i in range(size)]

    def _server_spec(self, index: int) -> str:
        quorum, election, client, observer = self._ports[index]
        if not self._dynamic:
            return f"{LOOPBACK}:{quorum}:{election}"
        role = "observer" if observer else "participant"
        return f"{LOOPBACK}:{quorum}:{election}:{role};{LOOPBACK}:{client}"

    def _make_member(self, index: int, quorum_config: Mapping[str, str]) -> ZooKeeperServer:
        config = dict(quorum_config)
        if self._ports[index][3]:
            config["peerType"] = "observer"
        return self._new_server(port=self._ports[index][2], extra_config=config,
                                server_id=index + 1)

    # -- dynamic membership (reconfig=True) -------------------------------------------------

    def server_line(self, index: int) -> str:
        """The ``server.N=...`` line of member ``index``, as ``reconfig(joining=...)``
        takes it.

        Raises:
            IndexError: no such member.
        """
        self._members[index]  # noqa: B018  (IndexError for an unknown member)
        return f"server.{index + 1}={self._server_spec(index)}"

    def server_id(self, index: int) -> int:
        """The ZooKeeper ``myid`` of member ``index`` (what ``reconfig(leaving=...)``
        takes)."""
        return index + 1

    def add_member(self, *, observer: bool = False, timeout: float = 60.0) -> int:
        """Start a new server that knows the current members and itself, and wait until
        it has synced with the leader; return its index. It is not a member yet: add it
        with ``reconfig(joining=[ensemble.server_line(index)])``.

        Raises:
            ConfigurationError: the ensemble was not made with ``reconfig=True``.
            ServerStartError: the server did not serve within ``timeout`` seconds.
        """
        if not self._dynamic:
            raise ConfigurationError("add_member needs ZooKeeperEnsemble(reconfig=True)")
        with self._lock:
            index = len(self._members)
            self._ports.append((free_port(), free_port(), free_port(), observer))
            config = {k: v for k, v in self._quorum_config.items()
                      if not k.startswith("server.")}
            for i in self.current_members() + [index]:
                config[f"server.{i + 1}"] = self._server_spec(i)
            member = self._make_member(index, config)
            self._members.append(member)
            self.size = len(self._members)
        member.start(timeout)
        return index

    def remove_member(self, index: int, *, stop: bool = True) -> None:
        """Forget member ``index`` after ``reconfig(leaving=[ensemble.server_id(index)])``
        removed it: it leaves :attr:`connect_string` and the quorum checks, and with
        ``stop`` its server stops (a removed server keeps serving otherwise).

        Raises:
            IndexError: no such member.
        """
        member = self._members[index]
        with self._lock:
            self._removed.add(index)
        if stop:
            member.stop(cleanup=False)

    def current_members(self) -> list[int]:
        """Indexes of the members not removed with :meth:`remove_member`."""
        return [i for i in range(len(self._members)) if i not in self._removed]

    def is_observer(self, index: int) -> bool:
        """Whether member ``index`` was configured as an observer."""
        return self._ports[index][3]

    # -- addresses ------------------------------------------------------------------------

    @property
    def members(self) -> list[ZooKeeperServer]:
        """The member servers, by index (a copy of the list; the servers are live)."""
        return list(self._members)

    @property
    def connect_string(self) -> str:
        """All current members, comma-separated: ``"127.0.0.1:P1,127.0.0.1:P2,..."``
        (members removed with :meth:`remove_member` are left out)."""
        return ",".join(self._members[i].connect_string for i in self.current_members())

    def member_connect_string(self, index: int) -> str:
        """The connect string of member ``index`` alone.

        Raises:
            IndexError: no such member.
        """
        return self._members[index].connect_string

    def __repr__(self) -> str:
        return f"<ZooKeeperEnsemble size={self.size} {self.connect_string}>"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> ZooKeeperEnsemble:
        """Start every member and wait until they form a quorum with one leader.

        Raises:
            ZooKeeperNotFoundError: no Java or no ZooKeeper jars.
            ServerStartError: a member JVM exited or never served.
            QuorumError: no quorum within ``timeout`` seconds.
        """
        with self._lock:
            # Launch all first: no member serves before a majority is up to elect a leader.
            for member in self._members:
                member.start(wait=False)
            try:
                self.wait_for_quorum(timeout)
            except BaseException:
                self.stop()
                raise
            return self

    def stop(self) -> None:
        """Stop every member and delete all the ensemble's files.  Idempotent."""
        with self._lock:
            # In parallel: each JVM takes a few hundred ms to shut down.
            threads = [threading.Thread(target=m.stop, daemon=True) for m in self._members]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()

    def stop_member(self, index: int) -> None:
        """Stop member ``index`` gracefully; its data is kept for :meth:`start_member`.

        Raises:
            IndexError: no such member.
        """
        self._members[index].stop(cleanup=False)

    def kill_member(self, index: int) -> None:
        """SIGKILL member ``index`` (a crash); its data is kept.

        Raises:
            IndexError: no such member.
        """
        self._members[index].kill()

    def start_member(self, index: int, timeout: float = 30.0, *, wait: bool = True) -> None:
        """Start member ``index`` again and, with ``wait``, wait until it serves (which
        needs a quorum of running members).

        Raises:
            IndexError: no such member.
            ServerStartError: the member did not serve within ``timeout`` seconds.
        """
        self._members[index].start(timeout, wait=wait)

    def restart_member(self, index: int, timeout: float = 30.0) -> None:
        """Restart member ``index`` gracefully, with its data, and wait until it serves.

        Raises:
            IndexError: no such member.
            ServerStartError: the member did not serve within ``timeout`` seconds.
        """
        self._members[index].restart(timeout)

    def __enter__(self) -> ZooKeeperEnsemble:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- quorum state ---------------------------------------------------------------------

    def modes(self) -> dict[int, str]:
        """``srvr`` Mode of each running member that answers (leader, follower …)."""
        result: dict[int, str] = {}
        for index, member in enumerate(self._members):
            if not member.running:
                continue
            try:
                result[index] = member.mode()
            except FourLetterWordError:
                continue
        return result

    def leader(self, timeout: float = 10.0) -> int:
        """Index of the member that is leader, waiting up to ``timeout`` seconds for one.

        Raises:
            QuorumError: no leader within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            modes = self.modes()
            leaders = [i for i, mode in modes.items() if mode == "leader"]
            if len(leaders) == 1:
                return leaders[0]
            if time.monotonic() >= deadline:
                raise QuorumError(f"no single leader after {timeout}s: modes {modes}")
            time.sleep(0.05)

    def wait_for_quorum(self, timeout: float = 30.0) -> int:
        """Wait until every running member serves (leader or follower) and exactly one
        leads; return the leader's index.

        Raises:
            QuorumError: not so within ``timeout`` seconds (the message lists each mode).
        """
        deadline = time.monotonic() + timeout
        while True:
            running = [i for i in self.current_members() if self._members[i].running]
            modes = self.modes()
            leaders = [i for i, mode in modes.items() if mode == "leader"]
            serving = [i for i in running
                       if modes.get(i) in ("leader", "follower", "observer")]
            if len(leaders) == 1 and len(serving) == len(running) and running:
                return leaders[0]
            if time.monotonic() >= deadline:
                raise QuorumError(
                    f"no quorum after {timeout}s: running members {running}, modes {modes}"
                )
            time.sleep(0.05)
