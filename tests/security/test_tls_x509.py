"""TLS: client certificates and the server's x509 provider, hostname verification on by
default, turning it off explicit and logged once."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from zkwarden import ACL, AsyncClient
from zkwarden.errors import ConfigurationError, ConnectionLossError, NoAuthError
from zkwarden.testing import ZooKeeperServer
from zkwarden.tls import resolve_tls, tls_context

from ._certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def mtls_server(certs: Certs) -> Iterator[ZooKeeperServer]:
    with ZooKeeperServer(tls_keystore=certs.server, tls_truststore=certs.ca,
                         client_auth="need") as server:
        yield server


async def test_client_certificate_gives_an_x509_identity(
    mtls_server: ZooKeeperServer, certs: Certs
) -> None:
    ctx = tls_context(cafile=certs.ca, certfile=certs.client_cert, keyfile=certs.client_key)
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    async with AsyncClient(mtls_server.secure_connect_string, tls=ctx,
                           session_timeout=3.0) as zk:
        who = {(i.auth_scheme, i.user) for i in await zk.whoami()}
        assert ("x509", certs.client_dn) in who
        await zk.create("/x509-only", b"cert holders", acl=[ACL.x509(certs.client_dn)])
        assert (await zk.get("/x509-only"))[0] == b"cert holders"
    # The plain port of the same server: no certificate, no identity, no access.
    async with AsyncClient(mtls_server.connect_string, session_timeout=3.0) as anon:
        with pytest.raises(NoAuthError):
            await anon.get("/x509-only")


async def test_no_client_certificate_is_refused_when_required(
    mtls_server: ZooKeeperServer, certs: Certs
) -> None:
    client = AsyncClient(mtls_server.secure_connect_string, tls=tls_context(cafile=certs.ca),
                         session_timeout=2.0)
    with pytest.raises(ConnectionLossError):
        await client.start(timeout=3.0)
    await client.close()


async def test_certificate_for_another_host_is_refused_by_default(tmp_path: Path) -> None:
    other = make_certs(tmp_path, server_names="DNS:other.example")
    with ZooKeeperServer(tls_keystore=other.server) as server:
        client = AsyncClient(server.secure_connect_string, tls=tls_context(cafile=other.ca),
                             session_timeout=2.0)
        with pytest.raises(ConnectionLossError):
            await client.start(timeout=3.0)
        await client.close()
        # Turned off explicitly, it connects (the certificate chain is still verified).
        lax = tls_context(cafile=other.ca, check_hostname=False)
        async with AsyncClient(server.secure_connect_string, tls=lax, session_timeout=2.0) as zk:
            assert await zk.exists("/") is not None


def test_verification_off_is_logged_once_per_context(caplog: pytest.LogCaptureFixture) -> None:
    lax = tls_context(check_hostname=False)
    with caplog.at_level(logging.WARNING, logger="zkwarden.tls"):
        assert resolve_tls(lax) is lax
        assert resolve_tls(lax) is lax
    assert len([r for r in caplog.records if "hostname is not checked" in r.message]) == 1
    caplog.clear()
    none = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    none.check_hostname = False
    none.verify_mode = ssl.CERT_NONE
    with caplog.at_level(logging.WARNING, logger="zkwarden.tls"):
        resolve_tls(none)
    assert any("not verified" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zkwarden.tls"):
        default = resolve_tls(True)
        assert default is not None and default.check_hostname
        assert resolve_tls(tls_context()) is not None
        assert resolve_tls(None) is None
    assert not caplog.records


def test_bad_files_are_configuration_errors_without_secrets(
    tmp_path: Path, certs: Certs
) -> None:
    passphrase = tmp_path / "pass"
    passphrase.write_text("Sup3r-Secret-Passphrase\n")
    with pytest.raises(ConfigurationError) as info:
        tls_context(cafile=tmp_path / "missing.pem")
    assert "missing.pem" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        tls_context(certfile=certs.client_cert, keyfile=certs.ca,
                    key_password_file=passphrase)
    assert "Sup3r" not in str(info.value) and "client.pem" in str(info.value)
