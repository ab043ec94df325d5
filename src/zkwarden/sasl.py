"""SASL options for ``AsyncClient(sasl=...)`` and ``Client(sasl=...)``.

>>> SASLOptions(mechanism="DIGEST-MD5", username="alice", password_file="/run/secrets/zk")
SASLOptions(mechanism='DIGEST-MD5', username='alice', password=<hidden>, ...)

DIGEST-MD5 is built in (standard library only). GSSAPI (Kerberos) needs the optional extra
``pip install zkwarden[kerberos]``. Secrets never appear in ``repr()``, ``str()`` or in any
message raised from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import ConfigurationError
from .protocol.sasl import SaslFactory, SaslMechanism

__all__ = ("SASLOptions", "MECHANISMS", "read_secret_file")

MECHANISMS = ("DIGEST-MD5", "GSSAPI")
#: The server name ZooKeeper's servers use in DIGEST-MD5's digest-uri (reference 11.3).
DIGEST_SERVER_NAME = "zk-sasl-md5"
#: Secrets longer than this are refused (a file of the wrong kind, not a password).
MAX_SECRET_BYTES = 4096


def read_secret_file(path: str | os.PathLike[str], what: str = "password") -> str:
    """Read a secret from ``path``: UTF-8, one trailing newline removed.

    Raises:
        ConfigurationError: unreadable, empty, too large or not UTF-8 (the message names
            the file, never its content).
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            raw = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} file {name!r}: {exc.strerror}") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigurationError(f"the {what} file {name!r} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigurationError(f"the {what} file {name!r} is not UTF-8") from None
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if not text:
        raise ConfigurationError(f"the {what} file {name!r} is empty")
    return text


class _Hidden:
    """Shown in place of a secret."""

    def __repr__(self) -> str:
        return "<hidden>"


@dataclass(frozen=True)
class SASLOptions:
    """How to authenticate with SASL after each connect (before any other request).

    DIGEST-MD5: ``username`` and one of ``password``, ``password_file`` (preferred: the
    file is read when the client is made) or ``password_env`` (an environment variable's
    name). ``server_name`` is the host part of the digest-uri; ZooKeeper's servers expect
    ``"zk-sasl-md5"``, the default. ``realm`` forces a realm (default: the server's).

    GSSAPI: credentials come from the default credential cache (``kinit``), or from
    ``keytab`` (a client keytab) for ``principal`` (default: the keytab's first principal
    or the cache's). The server's principal is ``<service>/<host>``, where host is
    ``server_name`` when given, else the host of the connect string being connected to.

    Raises (constructor):
        ConfigurationError: unknown mechanism, missing or conflicting fields.
    """

    mechanism: str = "DIGEST-MD5"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: str | None = None
    password_env: str | None = None
    service: str = "zookeeper"
    server_name: str | None = None
    realm: str | None = None
    principal: str | None = None
    keytab: str | None = None

    def __post_init__(self) -> None:
        mech = self.mechanism.upper() if isinstance(self.mechanism, str) else self.mechanism
        if mech not in MECHANISMS:
            raise ConfigurationError(
                f"unknown SASL mechanism {self.mechanism!r}; expected one of {', '.join(MECHANISMS)}"
            )
        object.__setattr__(self, "mechanism", mech)
        for name in ("username", "password", "password_file", "password_env", "service",
                     "server_name", "realm", "principal", "keytab"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"SASL option {name} must be a string")
            if isinstance(value, str) and ("\0" in value or (name != "password" and not value)):
                raise ConfigurationError(f"SASL option {name} is empty or contains NUL")
        if not self.service or "/" in self.service or "@" in self.service:
            raise ConfigurationError(f"SASL service must be a plain name, got {self.service!r}")
        sources = [n for n in ("password", "password_file", "password_env")
                   if getattr(self, n) is not None]
        if mech == "DIGEST-MD5":
            if not self.username:
                raise ConfigurationError("SASL DIGEST-MD5 needs a username")
            if len(sources) != 1:
                raise ConfigurationError(
                    "SASL DIGEST-MD5 needs exactly one of password, password_file, password_env"
                )
            if self.principal is not None or self.keytab is not None:
                raise ConfigurationError("principal and keytab are GSSAPI options")
        else:
            if sources:
                raise ConfigurationError("SASL GSSAPI takes no password (use a keytab or kinit)")
            if self.username is not None:
                raise ConfigurationError("SASL GSSAPI takes principal=, not username=")

    def __repr__(self) -> str:
        shown = []
        for name in ("mechanism", "username", "password", "password_file", "password_env",
                     "service", "server_name", "realm", "principal", "keytab"):
            value = getattr(self, name)
            if value is None:
                continue
            shown.append(f"{name}={_Hidden()!r}" if name == "password" else f"{name}={value!r}")
        return f"SASLOptions({', '.join(shown)})"

    __str__ = __repr__

    def _password(self) -> str:
        if self.password is not None:
            return self.password
        if self.password_file is not None:
            return read_secret_file(self.password_file)
        assert self.password_env is not None
        value = os.environ.get(self.password_env)
        if not value:
            raise ConfigurationError(
                f"the environment variable {self.password_env} (SASL password) is unset or empty"
            )
        return value

    def factory(self) -> SaslFactory:
        """The factory the client calls once per connection (with the server's host).

        A password file or variable is read now, once.

        Raises:
            ConfigurationError: the password source cannot be read; GSSAPI without the
                ``kerberos`` extra installed; an unreadable keytab.
        """
        if self.mechanism == "DIGEST-MD5":
            from .protocol.sasl_digest import DigestMD5

            assert self.username is not None
            username, password = self.username, self._password()
            service = self.service
            server_name = self.server_name or DIGEST_SERVER_NAME
            realm = self.realm

            def make_digest(host: str) -> SaslMechanism:
                return DigestMD5(username, password, service=service,
                                 server_name=server_name, realm=realm)

            return make_digest
        try:
            from .sasl_gssapi import gssapi_factory
        except ImportError as exc:
            raise ConfigurationError(
                "SASL GSSAPI needs the optional extra: pip install 'zkwarden[kerberos]' "
                f"({exc})"
            ) from None
        return gssapi_factory(service=self.service, principal=self.principal,
                              server_name=self.server_name, keytab=self.keytab)
