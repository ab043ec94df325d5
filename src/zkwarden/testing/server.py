"""A real ZooKeeper server in a child JVM, for tests.

:class:`ZooKeeperServer` runs Apache ZooKeeper's own ``QuorumPeerMain`` from the jars of
Debian's ``zookeeper`` package (or ``$ZOOKEEPER_HOME/lib``) in a fresh temporary directory,
on a loopback port.  Nothing here re-implements the server; this module only writes a
``zoo.cfg``, starts and stops the JVM, and reads the server's four-letter words.

The JVM runs in its own process group.  Every JVM still running is killed at interpreter
exit, and a tiny watchdog process kills them too when this interpreter dies without running
its exit handlers (SIGKILL, a crashed test runner), so no orphan JVM outlives a test run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType

from zkwarden.errors import ConfigurationError

from ._config import DEBIAN_ZOOKEEPER_JAR as DEBIAN_ZOOKEEPER_JAR
from ._config import find_java, find_zookeeper_classpath, jaas_config, jvm_command, zoo_cfg
from ._errors import FourLetterWordError, ServerStartError
from ._fourlw import (
    parse_cons_sessions,
    parse_dump_ephemerals,
    parse_dump_sessions,
    parse_mntr,
    send_four_letter_word,
)
from ._process import LOOPBACK, free_port, kill_group, reaper
from .kdc import KerberosSetup

__all__ = (
    "ZooKeeperServer",
    "find_java",
    "find_zookeeper_classpath",
)

_log = logging.getLogger("zkwarden.testing")


class ZooKeeperServer:
    """One real ZooKeeper server (a child JVM) on a loopback port, for tests.

    Times are in seconds.  ``tick_time`` is short (0.1 s) so that sessions expire within a
    second or two: the server clamps session timeouts into [2, 20] ticks unless
    ``min_session_timeout``/``max_session_timeout`` say otherwise.  ``data_dir`` keeps the
    data outside the temporary directory (it survives :meth:`stop`); ``server_id`` writes a
    ``myid`` file, which an ensemble member needs (see :class:`ZooKeeperEnsemble`).
    ``read_only_mode`` sets ``readonlymode.enabled`` and turns on local sessions, without
    which a read-only 3.8 server accepts no new session (a session stays local, and so
    bound to its server, until it creates an ephemeral node).
    ``maxClientCnxns`` defaults to 0 (unlimited) since many tests share one loopback IP;
    ``extra_config`` entries are written to ``zoo.cfg`` last and override everything.

    Lifecycle: :meth:`start` (idempotent), :meth:`restart` (same port and data),
    :meth:`kill` (crash, data kept), :meth:`wipe` (lose all data), :meth:`stop` (terminate
    and remove the temporary directory).  Usable as a context manager.  Methods are
    thread-safe.
    """

    def __init__(
        self,
        *,
        tick_time: float = 0.1,
        min_session_timeout: float | None = None,
        max_session_timeout: float | None = None,
        four_letter_words: str | Sequence[str] = "*",
        extended_types: bool = True,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        read_only_mode: bool = False,
        jvm_heap: str = "256m",
        extra_config: Mapping[str, str] | None = None,
        force_sync: bool = False,
        server_id: int | None = None,
        stop_timeout: float = 5.0,
        tls_keystore: str | os.PathLike[str] | None = None,
        tls_keystore_password: str = "",
        tls_truststore: str | os.PathLike[str] | None = None,
        client_auth: str = "none",
        sasl_users: Mapping[str, str] | None = None,
        kerberos: KerberosSetup | None = None,
    ) -> None:
        """Configure a server; nothing starts until :meth:`start`.

        ``tls_keystore`` (a PKCS12 or PEM file with the server's key and certificate) adds
        a TLS client port (:attr:`secure_port`, :attr:`secure_connect_string`) served by
        ZooKeeper's Netty connection factory.  ``client_auth`` (``none``, ``want``,
        ``need``) asks TLS clients for a certificate signed by a CA in ``tls_truststore``
        (PEM or PKCS12); the server's ``x509`` provider then gives the connection the
        identity ``x509:<subject DN>``.

        SASL: ``sasl_users`` (name -> password) accepts DIGEST-MD5 for those users;
        ``kerberos`` (from :meth:`zkwarden.testing.kdc.KerberosKDC.server_setup`) accepts
        GSSAPI.  Either writes a JAAS file, passes it (and ``krb5.conf``) as system
        properties, and registers ``SASLAuthenticationProvider`` so ``sasl:`` ACLs work.

        Raises:
            ConfigurationError: an option is out of range, or both ``sasl_users`` and
                ``kerberos`` are given.
        """
        if tick_time <= 0:
            raise ConfigurationError(f"tick_time must be positive, got {tick_time!r}")
        for name, value in (("min", min_session_timeout), ("max", max_session_timeout)):
            if value is not None and value <= 0:
                raise ConfigurationError(f"{name}_session_timeout must be positive: {value!r}")
        if port is not None and not 0 < port < 65536:
            raise ConfigurationError(f"port out of range: {port!r}")
        if not re.fullmatch(r"\d+[kKmMgG]?", jvm_heap):
            raise ConfigurationError(f"jvm_heap must look like '256m', got {jvm_heap!r}")
        if server_id is not None and not 0 < server_id < 256:
            raise ConfigurationError(f"server_id must be in 1..255, got {server_id!r}")
        if client_auth not in ("none", "want", "need"):
            raise ConfigurationError(f"client_auth must be none, want or need: {client_auth!r}")
        if sasl_users is not None and kerberos is not None:
            raise ConfigurationError("a server takes sasl_users or kerberos, not both")
        self.sasl_users = dict(sasl_users) if sasl_users is not None else None
        if self.sasl_users is not None:
            jaas_config(sasl_users=self.sasl_users)  # validates the names now
        self.kerberos = kerberos
        self.client_auth = client_auth
        self.tls_truststore = os.fspath(tls_truststore) if tls_truststore is not None else None
        self.tick_time = tick_time
        self.min_session_timeout = min_session_timeout
        self.max_session_timeout = max_session_timeout
        if isinstance(four_letter_words, str):
            self.four_letter_words = four_letter_words
        else:
            self.four_letter_words = ",".join(four_letter_words)
        self.extended_types = extended_types
        self.read_only_mode = read_only_mode
        self.jvm_heap = jvm_heap
        self.extra_config = dict(extra_config or {})
        self.force_sync = force_sync
        self.server_id = server_id
        self.stop_timeout = stop_timeout
        self.tls_keystore = os.fspath(tls_keystore) if tls_keystore is not None else None
        self.tls_keystore_password = tls_keystore_password
        self._secure_port: int | None = None
        self._fixed_port = port is not None
        self._port = port
        self._data_dir = os.fspath(data_dir) if data_dir is not None else None
        self._lock = threading.RLock()
        self._workdir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._served = False

    # -- addresses and files --------------------------------------------------------------

    @property
    def secure_port(self) -> int | None:
        """The TLS client port (None without ``tls_keystore``; known once started)."""
        return self._secure_port

    @property
    def secure_connect_string(self) -> str:
        """``"127.0.0.1:<secure_port>"``.

        Raises:
            ConfigurationError: the server has no TLS port, or has not been started.
        """
        if self._secure_port is None:
            raise ConfigurationError("this server has no TLS port (tls_keystore=...)")
        return f"{LOOPBACK}:{self._secure_port}"

    @property
    def host(self) -> str:
        """The address the server listens on (always loopback)."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """The client port, chosen on first use when none was given; kept across restarts."""
        with self._lock:
            if self._port is None:
                self._port = free_port()
            return self._port

    @property
    def connect_string(self) -> str:
        """``"127.0.0.1:PORT"``, ready for a client."""
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> str | None:
        """ZooKeeper's dataDir, or None before the first start (temporary data)."""
        if self._data_dir is not None:
            return self._data_dir
        return os.path.join(self._workdir, "data") if self._workdir else None

    @property
    def log_path(self) -> str | None:
        """The server's log file (stdout and stderr of the JVM), None when not set up."""
        return os.path.join(self._workdir, "zookeeper.log") if self._workdir else None

    @property
    def pid(self) -> int | None:
        """Process id of the JVM (also its process group id), None when not running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the JVM process is alive (it may not be serving yet)."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ZooKeeperServer {self.host}:{self._port} {state}>"

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30.0, *, wait: bool = True) -> ZooKeeperServer:
        """Start the JVM (no-op when running) and, with ``wait``, wait until it serves.

        Serving means ``ruok`` answers ``imok`` and ``srvr`` reports a ``Mode``.  After
        :meth:`kill` or :meth:`wipe`, the same directory (and data) is reused.  Returns self.

        Raises:
            ZooKeeperNotFoundError: no Java or no ZooKeeper jars.
            ServerStartError: the JVM exited, or did not serve within ``timeout`` seconds
                (the JVM is killed then); the message ends with the last lines of its log.
        """
        with self._lock:
            if self.running:
                if wait:
                    self.wait_ready(timeout)
                return self
            # Only a port we picked ourselves, never served on, may change under the caller.
            attempts = 1 if self._fixed_port or self._served else 3
            for attempt in range(attempts):
                try:
                    self._launch()
                except OSError as exc:  # no disk space, unreadable java, ...
                    raise ServerStartError(f"cannot launch ZooKeeper: {exc}") from exc
                if not wait:
                    return self
                try:
                    self.wait_ready(timeout)
                    self._served = True
                    return self
                except ServerStartError:
                    if attempt + 1 < attempts and "Address already in use" in self._log_tail():
                        # Someone took our port between the check and the bind: try another.
                        _log.info("port %s taken, retrying on another port", self._port)
                        self._port = free_port()
                        continue
                    raise
        return self  # pragma: no cover - the loop always returns or raises

    def _launch(self) -> None:
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="zkwarden-zk-")
            reaper.own_dir(self._workdir)
        data_dir = self.data_dir
        assert data_dir is not None
        os.makedirs(data_dir, exist_ok=True)
        if self.server_id is not None:
            with open(os.path.join(data_dir, "myid"), "w") as f:
                f.write(f"{self.server_id}\n")
        port = self.port
        if self.tls_keystore is not None and self._secure_port is None:
            self._secure_port = free_port()
        config = zoo_cfg(
            data_dir=data_dir,
            port=port,
            tick_time=self.tick_time,
            four_letter_words=self.four_letter_words,
            extended_types=self.extended_types,
            min_session_timeout=self.min_session_timeout,
            max_session_timeout=self.max_session_timeout,
            secure_port=self._secure_port,
            tls_keystore=self.tls_keystore,
            tls_keystore_password=self.tls_keystore_password,
            read_only_mode=self.read_only_mode,
            extra_config=self.extra_config,
            sasl=self.sasl_users is not None or self.kerberos is not None,
            client_auth=self.client_auth,
            tls_truststore=self.tls_truststore,
        )
        config_path = os.path.join(self._workdir, "zoo.cfg")
        with open(config_path, "w") as f:
            f.writelines(f"{key}={value}\n" for key, value in config.items())
        cmd = jvm_command(
            config_path,
            jvm_heap=self.jvm_heap,
            force_sync=self.force_sync,
            read_only_mode=self.read_only_mode,
            netty=self.tls_keystore is not None,
            system_properties=self._sasl_properties(),
        )
        log_path = self.log_path
        assert log_path is not None
        with open(log_path, "ab") as log:
            log.write(f"=== zkwarden: starting {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
                start_new_session=True,
            )
        reaper.add_group(self._proc.pid, self._workdir)
        _log.info(
            "started ZooKeeper pid %d on %s (%s)",
            self._proc.pid,
            self.connect_string,
            self._workdir,
        )

    def _sasl_properties(self) -> dict[str, str]:
        """Write the JAAS file (when SASL is on); the system properties that point at it."""
        if self.sasl_users is None and self.kerberos is None:
            return {}
        assert self._workdir is not None
        path = os.path.join(self._workdir, "jaas.conf")
        kerberos = self.kerberos
        text = jaas_config(
            sasl_users=self.sasl_users,
            keytab=kerberos.keytab if kerberos else None,
            principal=kerberos.principal if kerberos else None,
        )
        # The file holds test passwords: readable by its owner only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        props = {"java.security.auth.login.config": path}
        if kerberos is not None:
            props["java.security.krb5.conf"] = kerberos.krb5_conf
            props["javax.security.auth.useSubjectCredsOnly"] = "false"
        return props

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server answers ``ruok`` and ``srvr`` reports a ``Mode``.

        Raises:
            ServerStartError: the JVM is not running, exited, or is not serving within
                ``timeout`` seconds (then it is killed).
        """
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            proc = self._proc
            if proc is None:
                raise ServerStartError(f"{self!r} is not started")
            code = proc.poll()
            if code is not None:
                self._forget_process()
                raise ServerStartError(
                    f"ZooKeeper on {self.connect_string} exited with code {code}"
                    + self._log_excerpt()
                )
            try:
                if self.four_letter_word("ruok", timeout=1.0).strip() == "imok":
                    srvr = self.four_letter_word("srvr", timeout=1.0)
                    if "Mode:" in srvr:
                        return
                    last = srvr.strip()
            except FourLetterWordError as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                self._terminate(signal.SIGKILL, 5.0)
                raise ServerStartError(
                    f"ZooKeeper on {self.connect_string} not serving after {timeout}s "
                    f"(last answer: {last})" + self._log_excerpt()
                )
            time.sleep(0.05)

    def _terminate(self, sig: int, grace: float) -> None:
        """Signal the JVM's process group; SIGKILL it after ``grace`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            kill_group(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _log.warning(
                    "ZooKeeper pid %d ignored signal %d for %.1fs, killing", proc.pid, sig, grace
                )
        # Whatever else is in the group (nothing, normally) goes too.
        kill_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)
        self._forget_process()

    def _forget_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            reaper.discard_group(proc.pid)

    def stop(self, *, cleanup: bool = True) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``stop_timeout`` seconds.

        With ``cleanup`` (the default) the temporary directory is deleted, so the next
        :meth:`start` begins empty (a ``data_dir`` given by the caller is always kept).
        With ``cleanup=False`` files and data stay for the next :meth:`start`.
        Idempotent; never raises for an already stopped server.
        """
        with self._lock:
            was_running = self.running
            self._terminate(signal.SIGTERM, self.stop_timeout)
            if cleanup:
                self._cleanup_files()
            if was_running:
                _log.info("stopped ZooKeeper on %s", self.connect_string)

    def _cleanup_files(self) -> None:
        workdir, self._workdir = self._workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
            reaper.release_dir(workdir)

    def kill(self) -> None:
        """SIGKILL the JVM, as in a crash.  Files and data stay; :meth:`start` or
        :meth:`restart` brings the server back with them.  No-op when not running.
        """
        with self._lock:
            self._terminate(signal.SIGKILL, 5.0)

    def restart(self, timeout: float = 30.0) -> ZooKeeperServer:
        """Stop the JVM gracefully and start it again on the same port with the same data.

        Works on a stopped or killed server too (then it is a plain :meth:`start`).

        Raises:
            ServerStartError: as :meth:`start`.
            ZooKeeperNotFoundError: as :meth:`start`.
        """
        with self._lock:
            self._terminate(signal.SIGTERM, self.stop_timeout)
            return self.start(timeout)

    def wipe(self, timeout: float = 30.0) -> None:
        """Delete all the server's data, so every znode and session is gone.

        A running server is killed, wiped and started again (empty, same port) before this
        returns; a stopped one is only wiped, and starts empty next time.

        Raises:
            ServerStartError: as :meth:`start`, when the server was running.
            ZooKeeperNotFoundError: as :meth:`start`.
        """
        with self._lock:
            was_running = self.running
            self._terminate(signal.SIGKILL, 5.0)
            data_dir = self.data_dir
            if data_dir is not None and os.path.isdir(data_dir):
                for entry in os.listdir(data_dir):
                    path = os.path.join(data_dir, entry)
                    if os.path.isdir(path) and not os.path.islink(path):
                        shutil.rmtree(path)
                    else:
                        os.unlink(path)
            if was_running:
                self.start(timeout)

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- logs -----------------------------------------------------------------------------

    def _log_tail(self, lines: int = 40) -> str:
        path = self.log_path
        if path is None:
            return ""
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                data = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(data.splitlines()[-lines:])

    def _log_excerpt(self) -> str:
        tail = self._log_tail()
        return f"\n--- last lines of {self.log_path} ---\n{tail}" if tail else ""

    # -- four-letter words ----------------------------------------------------------------

    def four_letter_word(self, cmd: str, timeout: float = 5.0) -> str:
        """Send the four-letter word ``cmd`` (``ruok``, ``srvr``, ``mntr`` …); return the reply.

        Raises:
            ConfigurationError: ``cmd`` is not four ASCII letters.
            FourLetterWordError: the server did not answer or refused the command.
        """
        return send_four_letter_word(self.host, self.port, cmd, timeout)[0]

    def mntr(self) -> dict[str, str]:
        """The server's ``mntr`` metrics (``zk_server_state``, ``zk_ephemerals_count`` …).

        Raises:
            FourLetterWordError: no answer, or the server is not serving.
        """
        return parse_mntr(self.four_letter_word("mntr"))

    def mode(self) -> str:
        """The ``Mode`` that ``srvr`` reports: standalone, leader, follower, read-only …

        Raises:
            FourLetterWordError: no answer, or the server is not serving yet.
        """
        text = self.four_letter_word("srvr")
        for line in text.splitlines():
            if line.startswith("Mode:"):
                return line.partition(":")[2].strip()
        raise FourLetterWordError(f"srvr without a Mode: {text.strip()!r}")

    def cons(self) -> list[str]:
        """One line per client connection (``cons``), without the connection asking.

        Raises:
            FourLetterWordError: the server did not answer.
        """
        text, local_port = send_four_letter_word(self.host, self.port, "cons", 5.0)
        own = re.compile(rf"^/[^:\[]+:{local_port}\[")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return [line for line in lines if not own.match(line)]

    def alive_connections(self) -> int:
        """Client connections open on the server, not counting the ``mntr`` one itself.

        Raises:
            FourLetterWordError: no answer, or the server is not serving.
        """
        return int(self.mntr()["zk_num_alive_connections"]) - 1

    def sessions(self) -> set[int]:
        """Ids (signed 64-bit, as on the wire) of the sessions this server knows.

        The union of the session tracker in ``dump`` (connected or not, until they expire)
        and the sessions of connections in ``cons``.

        Raises:
            FourLetterWordError: the server did not answer.
        """
        return parse_dump_sessions(self.four_letter_word("dump")) | parse_cons_sessions(self.cons())

    def ephemerals(self) -> dict[int, list[str]]:
        """Ephemeral node paths per owning session id (signed), from ``dump``.

        Raises:
            FourLetterWordError: the server did not answer.
        """
        return parse_dump_ephemerals(self.four_letter_word("dump"))
