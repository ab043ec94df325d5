"""SASL DIGEST-MD5 (RFC 2831), client side, as ZooKeeper's servers speak it.

Sans-IO and standard library only: :class:`DigestMD5` turns the server's challenge into the
digest-response and checks the server's ``rspauth`` proof. Only ``qop=auth`` is offered
(no integrity or confidentiality layer: ZooKeeper's servers do not ask for one, and
DIGEST-MD5's ciphers are obsolete; use TLS for confidentiality).

What a ZooKeeper 3.8 server sends (reference section 11.3): ``realm="zk-sasl-md5",
nonce="...",charset=utf-8,algorithm=md5-sess`` with no qop list, and expects the
digest-uri ``zookeeper/zk-sasl-md5``.

The password is kept only inside the object, never in its ``repr`` or in any message.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from ..errors import AuthFailedError

__all__ = ("DigestMD5", "parse_challenge", "digest_response_value")

#: RFC 2831 2.1.1: a digest-challenge MUST be shorter than 2048 bytes; 2.1.3: so is rspauth.
MAX_CHALLENGE = 2048
_NAME = "DIGEST-MD5"


def _h(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).digest()


def _hex(data: bytes) -> bytes:
    return hashlib.md5(data, usedforsecurity=False).hexdigest().encode("ascii")


def parse_challenge(data: bytes) -> dict[str, str]:
    """Parse a DIGEST-MD5 directive list (``key=value`` or ``key="quoted"``, comma separated).

    A repeated directive keeps its first value, except ``realm`` (several may be offered:
    they are joined with NUL, which no realm contains). Empty elements are allowed, as the
    RFC's ``#rule`` says.

    Raises:
        AuthFailedError: too long, not UTF-8, or malformed.
    """
    if len(data) >= MAX_CHALLENGE:
        raise AuthFailedError(f"{_NAME}: server challenge too long ({len(data)} bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthFailedError(f"{_NAME}: server challenge is not UTF-8") from None
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise AuthFailedError(f"{_NAME}: malformed server challenge")
        key = text[i:eq].strip().lower()
        if not key or not key.replace("-", "").isalnum():
            raise AuthFailedError(f"{_NAME}: malformed server challenge")
        i = eq + 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise AuthFailedError(f"{_NAME}: unterminated quoted value in challenge")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                chars.append(c)
                i += 1
            value = "".join(chars)
        else:
            end = text.find(",", i)
            end = n if end < 0 else end
            value = text[i:end].strip()
            i = end
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i < n and text[i] != ",":
            raise AuthFailedError(f"{_NAME}: malformed server challenge")
        if key == "realm" and key in out:
            out[key] += "\0" + value
        else:
            out.setdefault(key, value)
    return out


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _encode(value: str, utf8: bool) -> bytes:
    # RFC 2831 2.1.2.1: with charset=utf-8 the strings are UTF-8, unless every character is
    # ISO 8859-1, in which case they are hashed as ISO 8859-1 (as Java's client does).
    try:
        return value.encode("iso-8859-1")
    except UnicodeEncodeError:
        if utf8:
            return value.encode("utf-8")
        raise AuthFailedError(
            f"{_NAME}: the server did not offer charset=utf-8, and a credential is not ISO 8859-1"
        ) from None


def digest_response_value(
    *,
    username: str,
    realm: str,
    password: str,
    nonce: str,
    cnonce: str,
    nc: str,
    qop: str,
    digest_uri: str,
    authzid: str | None,
    utf8: bool,
    for_rspauth: bool = False,
) -> bytes:
    """The 32 hex digits of ``response`` (or of ``rspauth`` with ``for_rspauth``), RFC 2831 2.1.2.1.

    Raises:
        AuthFailedError: a credential cannot be encoded in the negotiated charset.
    """
    secret = _h(_encode(username, utf8) + b":" + _encode(realm, utf8) + b":"
                + _encode(password, utf8))
    a1 = secret + b":" + nonce.encode() + b":" + cnonce.encode()
    if authzid is not None:
        a1 += b":" + authzid.encode("utf-8")
    a2 = (b"" if for_rspauth else b"AUTHENTICATE") + b":" + digest_uri.encode("utf-8")
    kd = b":".join((_hex(a1), nonce.encode(), nc.encode(), cnonce.encode(), qop.encode(),
                    _hex(a2)))
    return _hex(kd)


class DigestMD5:
    """One DIGEST-MD5 exchange (a :class:`~zkwarden.protocol.sasl.SaslMechanism`).

    ``service`` and ``server_name`` make the digest-uri (``zookeeper/zk-sasl-md5`` for
    ZooKeeper's servers); ``realm`` forces a realm (default: the first one the server
    offers); ``authzid`` asks for another authorization identity; ``cnonce`` is for tests
    only (default: 128 random bits).
    """

    name = _NAME

    def __init__(
        self,
        username: str,
        password: str,
        *,
        service: str = "zookeeper",
        server_name: str = "zk-sasl-md5",
        realm: str | None = None,
        authzid: str | None = None,
        cnonce: str | None = None,
    ) -> None:
        self.username = username
        self._password = password
        self.service = service
        self.server_name = server_name
        self.realm = realm
        self.authzid = authzid
        self._cnonce = cnonce if cnonce is not None else secrets.token_hex(16)
        self._step = 0
        self._expected_rspauth = b""
        self._complete = False

    def __repr__(self) -> str:
        return f"<DigestMD5 user={self.username!r} step={self._step} complete={self._complete}>"

    @property
    def complete(self) -> bool:
        """True once the server's ``rspauth`` was verified."""
        return self._complete

    def initial_response(self) -> bytes:
        """DIGEST-MD5 has no initial response: an empty token asks for the challenge."""
        if self._step != 0:
            raise AuthFailedError(f"{_NAME}: exchange already started")
        self._step = 1
        return b""

    def evaluate(self, challenge: bytes) -> bytes | None:
        """The digest-response to the challenge, then None once ``rspauth`` checks out.

        Raises:
            AuthFailedError: malformed or unsupported challenge (no ``auth`` qop, no
                ``md5-sess``, no nonce), wrong or missing ``rspauth``, or a token after
                the end.
        """
        if self._step == 0:
            self.initial_response()
        if self._step == 1:
            self._step = 2
            return self._respond(parse_challenge(challenge))
        if self._step == 2:
            self._step = 3
            got = parse_challenge(challenge).get("rspauth", "").encode("ascii", "replace")
            if not got or not hmac.compare_digest(got.lower(), self._expected_rspauth):
                raise AuthFailedError(
                    f"{_NAME}: the server's proof (rspauth) is wrong or missing: "
                    "it does not know the password (or an attacker answered)"
                )
            self._complete = True
            return None
        raise AuthFailedError(f"{_NAME}: unexpected token after the exchange completed")

    def _respond(self, ch: dict[str, str]) -> bytes:
        nonce = ch.get("nonce")
        if not nonce:
            raise AuthFailedError(f"{_NAME}: the server's challenge has no nonce")
        if ch.get("algorithm", "").lower() != "md5-sess":
            raise AuthFailedError(f"{_NAME}: the server's challenge lacks algorithm=md5-sess")
        qops = [q.strip().lower() for q in ch.get("qop", "auth").split(",")]
        if "auth" not in qops:
            raise AuthFailedError(
                f"{_NAME}: the server requires qop {ch.get('qop')!r}; only 'auth' is supported"
            )
        utf8 = ch.get("charset", "").lower() == "utf-8"
        offered = ch.get("realm", "").split("\0")
        realm = self.realm if self.realm is not None else offered[0]
        digest_uri = f"{self.service}/{self.server_name}"
        nc = "00000001"
        def value(for_rspauth: bool) -> bytes:
            return digest_response_value(
                username=self.username, realm=realm, password=self._password, nonce=nonce,
                cnonce=self._cnonce, nc=nc, qop="auth", digest_uri=digest_uri,
                authzid=self.authzid, utf8=utf8, for_rspauth=for_rspauth)

        response = value(False)
        self._expected_rspauth = value(True)
        parts = [f"username={_quote(self.username)}"]
        if realm:
            parts.append(f"realm={_quote(realm)}")
        parts += [f"nonce={_quote(nonce)}", f"cnonce={_quote(self._cnonce)}", f"nc={nc}",
                  "qop=auth", f"digest-uri={_quote(digest_uri)}",
                  f"response={response.decode('ascii')}"]
        if utf8:
            parts.append("charset=utf-8")
        if self.authzid is not None:
            parts.append(f"authzid={_quote(self.authzid)}")
        # Usernames may be non-ASCII: with charset=utf-8 the whole response is UTF-8.
        return ",".join(parts).encode("utf-8" if utf8 else "iso-8859-1", "strict")
