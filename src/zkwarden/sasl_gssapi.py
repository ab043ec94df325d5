"""SASL GSSAPI (Kerberos V5, RFC 4752) through the ``gssapi`` package: ``zkwarden[kerberos]``.

The exchange: GSS-API context tokens until the context is established (mutual
authentication), then the server's wrapped security-layer offer (4 octets: a bit mask of
layers and the largest buffer it takes), which the client unwraps and answers, wrapped,
with "no security layer" (ZooKeeper's servers offer and use none; TLS is the way to
protect the traffic).

Credentials: the default credential cache (``kinit``), or a client keytab (``keytab=``, or
MIT's ``KRB5_CLIENT_KTNAME``), from which initial credentials go into a private in-memory
cache so the user's cache is left alone. The server's principal is
``<service>/<host>`` (a host-based service name, resolved to a realm by ``krb5.conf``).

Note: ``gssapi`` may talk to the KDC (a blocking round trip) inside :meth:`initial_response`
to get a service ticket.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import gssapi
from gssapi.raw.misc import GSSError

from .errors import AuthFailedError, ConfigurationError
from .protocol.sasl import SaslFactory, SaslMechanism

__all__ = ("GSSAPIMechanism", "gssapi_factory")

_NAME = "GSSAPI"
_NO_SECURITY_LAYER = 1
_ccache_ids = itertools.count(1)


def _gss_text(exc: BaseException) -> str:
    # gssapi's messages come from the Kerberos library: principal names and reasons,
    # never keys or passwords.
    try:
        return str(exc.gen_message())  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a message is all that is wanted here
        return type(exc).__name__


class GSSAPIMechanism:
    """One GSSAPI exchange with the server ``<service>/<host>``."""

    name = _NAME

    def __init__(self, host: str, *, service: str = "zookeeper", principal: str | None = None,
                 keytab: str | None = None, authzid: str | None = None) -> None:
        self.host = host
        self.service = service
        self.principal = principal
        self.keytab = keytab
        self.authzid = authzid
        self._ctx: Any = None
        self._complete = False
        self._layer_done = False

    def __repr__(self) -> str:
        return f"<GSSAPIMechanism {self.service}/{self.host} complete={self._complete}>"

    @property
    def complete(self) -> bool:
        """True once the security layer was negotiated (the exchange succeeded)."""
        return self._complete

    def _credentials(self) -> Any:
        name = None
        if self.principal is not None:
            name = gssapi.Name(self.principal, name_type=gssapi.NameType.kerberos_principal)
        if self.keytab is None:
            return gssapi.Credentials(name=name, usage="initiate")
        # A private memory cache: the tickets from this keytab do not replace the user's.
        store: dict[bytes | str, bytes | str] = {b"client_keytab": os.fsencode(self.keytab),
                 b"ccache": f"MEMORY:zkwarden-{os.getpid()}-{next(_ccache_ids)}".encode()}
        return gssapi.Credentials(name=name, usage="initiate", store=store)

    def initial_response(self) -> bytes:
        """The first context token (asks the KDC for a service ticket).

        Raises:
            AuthFailedError: no credentials (no ticket, expired ticket, keytab unusable,
                unknown principal) or the service principal is unknown to the KDC.
        """
        if self._ctx is not None:
            raise AuthFailedError(f"{_NAME}: exchange already started")
        try:
            target = gssapi.Name(f"{self.service}@{self.host}",
                                 name_type=gssapi.NameType.hostbased_service)
            self._ctx = gssapi.SecurityContext(
                name=target, creds=self._credentials(), usage="initiate",
                flags=(gssapi.RequirementFlag.mutual_authentication
                       | gssapi.RequirementFlag.integrity),
            )
            token = self._ctx.step()
        except GSSError as exc:
            raise AuthFailedError(
                f"{_NAME}: cannot start Kerberos authentication to {self.service}/{self.host}: "
                f"{_gss_text(exc)}"
            ) from None
        return bytes(token or b"")

    def evaluate(self, challenge: bytes) -> bytes | None:
        """The next context token, or the wrapped answer to the security-layer offer.

        Raises:
            AuthFailedError: the server's token is invalid (mutual authentication failed),
                it offers no "no security layer" option, or a token came after the end.
        """
        if self._ctx is None:
            self.initial_response()
        ctx = self._ctx
        try:
            if not ctx.complete:
                token = ctx.step(challenge)
                return bytes(token or b"")
            if self._layer_done:
                if challenge:
                    raise AuthFailedError(f"{_NAME}: unexpected token after the exchange")
                return None
            offer = ctx.unwrap(challenge).message
            if len(offer) != 4:
                raise AuthFailedError(f"{_NAME}: malformed security-layer offer")
            if not offer[0] & _NO_SECURITY_LAYER:
                raise AuthFailedError(
                    f"{_NAME}: the server requires a security layer (offer {offer[0]:#x}); "
                    "only 'none' is supported"
                )
            reply = bytes((_NO_SECURITY_LAYER, 0, 0, 0))
            if self.authzid:
                reply += self.authzid.encode("utf-8")
            wrapped = ctx.wrap(reply, False).message
        except GSSError as exc:
            raise AuthFailedError(f"{_NAME}: Kerberos authentication failed: "
                                  f"{_gss_text(exc)}") from None
        self._layer_done = True
        self._complete = True
        return bytes(wrapped)


def gssapi_factory(
    *, service: str, principal: str | None, server_name: str | None, keytab: str | None
) -> SaslFactory:
    """A factory of :class:`GSSAPIMechanism` (one mechanism per connection), from the
    GSSAPI fields of :class:`zkwarden.SASLOptions`.

    Raises:
        ConfigurationError: ``keytab`` is not a readable file.
    """
    if keytab is not None and not os.access(keytab, os.R_OK):
        raise ConfigurationError(f"cannot read the keytab {keytab!r}")

    def make(host: str) -> SaslMechanism:
        return GSSAPIMechanism(server_name or host, service=service, principal=principal,
                               keytab=keytab)

    return make
