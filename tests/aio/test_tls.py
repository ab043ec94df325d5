"""TLS against a real ZooKeeper TLS port (Netty factory), with a self-made certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from zkwarden import AsyncClient, errors
from zkwarden.testing import ZooKeeperServer, find_java

pytestmark = pytest.mark.asyncio


def _make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1, made with the JDK's keytool."""
    keytool = shutil.which("keytool") or str(Path(find_java()).with_name("keytool"))
    keystore, cert = folder / "server.p12", folder / "server.pem"
    common = ["-keystore", str(keystore), "-storepass", "changeit", "-storetype", "PKCS12"]
    subprocess.run(
        [keytool, "-genkeypair", "-alias", "zk", "-keyalg", "RSA", "-keysize", "2048",
         "-dname", "CN=localhost", "-ext", "SAN=IP:127.0.0.1,DNS:localhost",
         "-validity", "2", *common],
        check=True, capture_output=True, timeout=60,
    )
    subprocess.run(
        [keytool, "-exportcert", "-rfc", "-alias", "zk", "-file", str(cert), *common],
        check=True, capture_output=True, timeout=60,
    )
    return keystore, cert


async def test_tls_session(tmp_path: Path) -> None:
    keystore, cert = _make_certificate(tmp_path)
    with ZooKeeperServer(tls_keystore=keystore, tls_keystore_password="changeit") as server:
        trusting = ssl.create_default_context(cafile=str(cert))
        async with AsyncClient(server.secure_connect_string, tls=trusting,
                               session_timeout=2.0) as zk:
            await zk.create("/tls-node", b"over tls", ephemeral=True)
            assert (await zk.get("/tls-node"))[0] == b"over tls"
            assert zk.negotiated_timeout is not None
        # A client that does not trust the certificate never gets a session.
        untrusting = ssl.create_default_context()
        refused = AsyncClient(server.secure_connect_string, tls=untrusting,
                              session_timeout=1.0)
        with pytest.raises(errors.ConnectionLossError):
            await refused.start(timeout=2.0)
