"""TLS contexts for ``AsyncClient(tls=...)``: server verification on by default, client
certificates for ZooKeeper's ``x509`` auth provider, and one warning when verification is
turned off.

>>> ctx = tls_context(cafile="ca.pem", certfile="client.pem", keyfile="client.key")
>>> AsyncClient("zk1:2281", tls=ctx)    # the server sees x509:CN=...

The server's hostname is verified against the connect string's host unless
``check_hostname=False`` is passed explicitly; :func:`resolve_tls` (what the client calls
on its ``tls`` option) logs a warning, once per context, when a context does not verify
the server.
"""

from __future__ import annotations

import logging
import os
import ssl
import weakref

from .errors import ConfigurationError

__all__ = ("tls_context", "resolve_tls")

_log = logging.getLogger("zkwarden.tls")
_warned: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()


def tls_context(
    *,
    cafile: str | os.PathLike[str] | None = None,
    certfile: str | os.PathLike[str] | None = None,
    keyfile: str | os.PathLike[str] | None = None,
    key_password_file: str | os.PathLike[str] | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A client context: trusts ``cafile`` (default: the system's CAs), presents
    ``certfile``/``keyfile`` (PEM; the key may be in ``certfile``) when given, and verifies
    the server's hostname unless ``check_hostname=False``. A key's passphrase is read from
    ``key_password_file``, never taken as an argument, so it cannot leak into a command line.

    Raises:
        ConfigurationError: a file cannot be read or does not hold what it should (the
            message names the file, never a passphrase).
    """
    try:
        ctx = ssl.create_default_context(cafile=os.fspath(cafile) if cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load the CA file {os.fspath(cafile or '')!r}: "
                                 f"{_reason(exc)}") from None
    if keyfile is not None and certfile is None:
        raise ConfigurationError("keyfile given without certfile")
    if certfile is not None:
        password: str | None = None
        if key_password_file is not None:
            from .sasl import read_secret_file

            password = read_secret_file(key_password_file, "key passphrase")
        try:
            ctx.load_cert_chain(os.fspath(certfile),
                                os.fspath(keyfile) if keyfile is not None else None,
                                password=password)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"cannot load the client certificate {os.fspath(certfile)!r}: {_reason(exc)}"
            ) from None
    if not check_hostname:
        ctx.check_hostname = False
    return ctx


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


def resolve_tls(tls: ssl.SSLContext | bool | None) -> ssl.SSLContext | None:
    """The client's ``tls`` option as a context (``True``: the system's CAs, hostname
    verified; ``None``/``False``: plain TCP). A context that does not verify the server's
    certificate or hostname is used as given, with one warning per context.

    Raises:
        ConfigurationError: ``tls`` is neither a context, a bool nor None.
    """
    if tls is None or tls is False:
        return None
    if tls is True:
        return ssl.create_default_context()
    if not isinstance(tls, ssl.SSLContext):
        raise ConfigurationError(f"tls must be an ssl.SSLContext, True or None, got {type(tls)}")
    if (tls.verify_mode == ssl.CERT_NONE or not tls.check_hostname) and tls not in _warned:
        _warned.add(tls)
        if tls.verify_mode == ssl.CERT_NONE:
            _log.warning("TLS: the server's certificate is not verified (the tls context "
                         "turns verification off): anyone on the path can impersonate "
                         "the ensemble")
        else:
            _log.warning("TLS: the server's hostname is not checked (the tls context turns "
                         "check_hostname off): any server with a certificate from a "
                         "trusted CA can impersonate the ensemble")
    return tls
