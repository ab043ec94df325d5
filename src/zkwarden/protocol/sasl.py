"""SASL for ZooKeeper (opcode 102): the mechanism interface the session machine drives.

A mechanism is sans-IO: it turns the server's challenges into responses and says when it is
done. The session machine sends its tokens right after the handshake, before anything else
(as the Java client holds its other requests back until SASL completes); a new mechanism
object is made for every connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from .jute import Reader, Writer
from .ops import OpCode, Request

__all__ = ("SaslMechanism", "SaslFactory", "Sasl")


@dataclass(frozen=True, slots=True)
class Sasl(Request):
    """sasl (102): GetSASLRequest ``{buffer token}`` -> SetSASLResponse ``{buffer token}``.

    Its replies come back in request order with a normal xid."""

    OPCODE: ClassVar[int] = OpCode.SASL
    token: bytes | None
    path: str = ""

    def body(self) -> bytes:
        w = Writer()
        w.buffer(self.token)
        return bytes(w.buf)

    def read_response(self, r: Reader) -> bytes | None:
        return r.buffer()


class SaslMechanism(Protocol):
    """One SASL exchange on one connection."""

    #: the mechanism name, e.g. "DIGEST-MD5" or "GSSAPI" (for messages; never a secret)
    name: str

    def initial_response(self) -> bytes:
        """The first token to send (empty for mechanisms without an initial response).

        Raises:
            AuthFailedError: the credentials cannot be used (e.g. no Kerberos ticket).
        """
        ...

    def evaluate(self, challenge: bytes) -> bytes | None:
        """The response to the server's ``challenge``; None when the exchange is complete
        and nothing more is to be sent.

        Raises:
            AuthFailedError: the server's challenge is invalid, or its proof is wrong.
        """
        ...

    @property
    def complete(self) -> bool:
        """True once the exchange succeeded (the server's last token was verified)."""
        ...


class SaslFactory(Protocol):
    """Makes the mechanism for one connection to ``host`` (Kerberos needs the host name)."""

    def __call__(self, host: str) -> SaslMechanism: ...
