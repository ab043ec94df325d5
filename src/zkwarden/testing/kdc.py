"""A real MIT Kerberos KDC for tests: Debian's ``krb5kdc`` with a realm of its own.

:class:`KerberosKDC` makes a temporary directory with a ``krb5.conf`` and a ``kdc.conf``,
creates the realm's database (``kdb5_util create``), adds principals with keytabs
(``kadmin.local``), and runs ``krb5kdc`` in the foreground on a loopback port. Nothing is
installed system-wide and nothing outside the directory is read: every tool runs with
``KRB5_CONFIG``/``KRB5_KDC_PROFILE`` pointing inside it. Start and stop are bounded.

Needs the Debian packages ``krb5-kdc`` and ``krb5-admin-server`` (``make test`` installs
them).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from types import TracebackType

from zkwarden.errors import ConfigurationError

from ._errors import HarnessError, ServerStartError
from ._process import LOOPBACK, free_port, kill_group, reaper

__all__ = ("KerberosKDC", "KerberosSetup", "KDCNotFoundError", "find_kdc_tools")

_log = logging.getLogger("zkwarden.testing")
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_TOOLS = ("krb5kdc", "kdb5_util", "kadmin.local")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)?")


class KDCNotFoundError(HarnessError):
    """The MIT KDC tools are not installed (``apt-get install krb5-kdc krb5-admin-server``)."""


def find_kdc_tools() -> dict[str, str]:
    """The paths of ``krb5kdc``, ``kdb5_util`` and ``kadmin.local``.

    Raises:
        KDCNotFoundError: one of them is missing.
    """
    found: dict[str, str] = {}
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    for tool in _TOOLS:
        where = shutil.which(tool, path=path)
        if where is None:
            raise KDCNotFoundError(
                f"`{tool}` not found: install it with "
                "`apt-get install krb5-kdc krb5-admin-server krb5-user`"
            )
        found[tool] = where
    return found


@dataclass(frozen=True)
class KerberosSetup:
    """What a ZooKeeper server needs to accept GSSAPI: the realm's ``krb5.conf``, the
    server's keytab and principal (``zookeeper/localhost@REALM``)."""

    krb5_conf: str
    keytab: str
    principal: str


class KerberosKDC:
    """An MIT KDC for realm ``realm`` on a loopback port, in a temporary directory.

    >>> with KerberosKDC() as kdc:
    ...     keytab = kdc.add_principal("alice")        # alice@ZKWARDEN.TEST
    ...     setup = kdc.server_setup()                  # zookeeper/localhost + keytab

    Clients use :meth:`client_env` (``KRB5_CONFIG``, ``KRB5_CLIENT_KTNAME``, a private
    ``KRB5CCNAME``).
    """

    def __init__(self, realm: str = "ZKWARDEN.TEST", *, ticket_lifetime: str = "1h") -> None:
        """Raises: ConfigurationError: a realm that is not upper-case letters, digits, dots."""
        if not re.fullmatch(r"[A-Z0-9][A-Z0-9.-]*", realm):
            raise ConfigurationError(f"realm must be upper-case like ZKWARDEN.TEST: {realm!r}")
        self.realm = realm
        self.ticket_lifetime = ticket_lifetime
        self.port: int | None = None
        self.workdir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._tools: dict[str, str] = {}

    # -- files ------------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        if self.workdir is None:
            raise HarnessError("the KDC is not started")
        return os.path.join(self.workdir, name)

    @property
    def krb5_conf(self) -> str:
        """The realm's ``krb5.conf`` (for clients: ``KRB5_CONFIG``; Java: ``java.security.krb5.conf``)."""
        return self._path("krb5.conf")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(KRB5_CONFIG=self._path("krb5.conf"), KRB5_KDC_PROFILE=self._path("kdc.conf"),
                   KRB5CCNAME=f"FILE:{self._path('admin.ccache')}")
        return env

    def _write_configs(self, port: int) -> None:
        d = self.workdir
        assert d is not None
        realm = self.realm
        with open(self._path("krb5.conf"), "w") as f:
            f.write(
                "[libdefaults]\n"
                f" default_realm = {realm}\n"
                " dns_lookup_realm = false\n dns_lookup_kdc = false\n rdns = false\n"
                " dns_canonicalize_hostname = false\n"
                # TCP only: the KDC listens on one TCP port, and Java follows this too.
                " udp_preference_limit = 1\n"
                f" ticket_lifetime = {self.ticket_lifetime}\n"
                " forwardable = false\n"
                f"[realms]\n {realm} = {{\n  kdc = {LOOPBACK}:{port}\n }}\n"
                f"[domain_realm]\n localhost = {realm}\n .localhost = {realm}\n"
            )
        with open(self._path("kdc.conf"), "w") as f:
            f.write(
                "[kdcdefaults]\n"
                f" kdc_tcp_listen = {LOOPBACK}:{port}\n"
                f" kdc_listen = {LOOPBACK}:{port}\n"
                "[realms]\n"
                f" {realm} = {{\n"
                f"  database_name = {d}/principal\n"
                f"  key_stash_file = {d}/stash\n"
                f"  acl_file = {d}/kadm5.acl\n"
                f"  max_life = {self.ticket_lifetime}\n"
                "  supported_enctypes = aes256-cts-hmac-sha1-96:normal "
                "aes128-cts-hmac-sha1-96:normal\n"
                " }\n"
                f"[logging]\n kdc = FILE:{d}/kdc.log\n"
            )
        with open(self._path("kadm5.acl"), "w") as f:
            f.write("")

    def _run(self, *args: str, timeout: float = 30.0) -> str:
        try:
            done = subprocess.run(list(args), env=self._env(), capture_output=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise ServerStartError(f"{args[0]} did not finish within {timeout}s") from None
        out = (done.stdout + done.stderr).decode("utf-8", "replace")
        if done.returncode != 0:
            raise ServerStartError(f"{' '.join(args[:2])} failed ({done.returncode}): {out[-2000:]}")
        return out

    def kadmin(self, query: str) -> str:
        """Run one ``kadmin.local`` query (e.g. ``"delprinc -force bob"``); return its output.

        Raises:
            ServerStartError: the query failed.
        """
        out = self._run(self._tools["kadmin.local"], "-r", self.realm, "-q", query)
        # kadmin.local exits 0 even when the query fails; it says so on stderr.
        if re.search(r"^(add_principal|ktadd|delete_principal|modify_principal|kadmin)"
                     r"[^\n]*(error|while|not found|Cannot)", out, re.M | re.I):
            raise ServerStartError(f"kadmin.local {query.split()[0]} failed: {out[-2000:]}")
        return out

    # -- principals ---------------------------------------------------------------------------

    def principal(self, name: str) -> str:
        """``name@REALM``."""
        return f"{name}@{self.realm}"

    def add_principal(self, name: str, keytab: str | None = None) -> str:
        """Add ``name`` (e.g. ``alice`` or ``zookeeper/localhost``) with a random key and
        export it to a keytab; returns the keytab's path.

        Raises:
            ConfigurationError: a name that is not ``primary`` or ``primary/instance``.
            ServerStartError: kadmin failed.
        """
        if not _NAME.fullmatch(name):
            raise ConfigurationError(f"bad principal name {name!r}")
        path = keytab or self._path(name.replace("/", "_") + ".keytab")
        self.kadmin(f"addprinc -randkey {name}")
        self.kadmin(f"ktadd -k {path} {name}")
        return path

    def delete_principal(self, name: str) -> None:
        """Remove ``name`` from the realm (its keytab stays, now useless).

        Raises:
            ServerStartError: kadmin failed.
        """
        self.kadmin(f"delprinc -force {name}")

    def server_setup(self, host: str = "localhost", service: str = "zookeeper") -> KerberosSetup:
        """Add ``<service>/<host>`` with a keytab: what ``ZooKeeperServer(kerberos=...)`` takes.

        Raises:
            ServerStartError: kadmin failed.
        """
        name = f"{service}/{host}"
        return KerberosSetup(self.krb5_conf, self.add_principal(name), self.principal(name))

    def client_env(self, keytab: str | None = None) -> dict[str, str]:
        """Environment variables for a client of this realm: ``KRB5_CONFIG``, a fresh private
        ``KRB5CCNAME``, and ``KRB5_CLIENT_KTNAME`` when ``keytab`` is given."""
        env = {"KRB5_CONFIG": self.krb5_conf,
               "KRB5CCNAME": f"FILE:{self._path('client.ccache')}"}
        if keytab is not None:
            env["KRB5_CLIENT_KTNAME"] = f"FILE:{keytab}"
        return env

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> KerberosKDC:
        """Create the realm and run the KDC; returns once it accepts TCP connections.

        Raises:
            KDCNotFoundError: the tools are not installed.
            ServerStartError: the database could not be made, or the KDC did not listen
                within ``timeout`` seconds (it is killed then).
        """
        if self._proc is not None:
            return self
        self._tools = find_kdc_tools()
        self.workdir = tempfile.mkdtemp(prefix="zkwarden-kdc-")
        reaper.own_dir(self.workdir)
        self.port = free_port()
        self._write_configs(self.port)
        # The master password only guards this throwaway database's stash file.
        self._run(self._tools["kdb5_util"], "-r", self.realm, "-P", "zkwarden-test-master",
                  "create", "-s")
        log = open(self._path("krb5kdc.out"), "ab")  # noqa: SIM115 - closed below
        try:
            self._proc = subprocess.Popen(
                [self._tools["krb5kdc"], "-n", "-r", self.realm], env=self._env(),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir, start_new_session=True,
            )
        finally:
            log.close()
        reaper.add_group(self._proc.pid, self.workdir)
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise ServerStartError(f"krb5kdc exited with code {code}")
            with contextlib.suppress(OSError), socket.create_connection(
                    (LOOPBACK, self.port), timeout=0.5):
                break
            if time.monotonic() >= deadline:
                self.stop()
                raise ServerStartError(f"krb5kdc not listening after {timeout}s")
            time.sleep(0.05)
        _log.info("started krb5kdc pid %d for %s on port %d", self._proc.pid, self.realm,
                  self.port)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the KDC (SIGTERM, SIGKILL after ``timeout``) and delete its directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_group(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5.0)
            reaper.discard_group(proc.pid)
        workdir, self.workdir = self.workdir, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
            reaper.release_dir(workdir)

    def __enter__(self) -> KerberosKDC:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
