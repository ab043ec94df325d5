"""A throwaway CA, server and client certificates made with the openssl command."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Certs:
    ca: Path              # CA certificate (the server's truststore and the client's cafile)
    server: Path          # server key + certificate in one PEM (the server's keystore)
    client_cert: Path
    client_key: Path
    client_dn: str


def _issue(folder: Path, name: str, subject: str, ext: str) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", subject, cwd=folder)
    (folder / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
             "-extfile", f"{name}.ext", cwd=folder)


def make_certs(folder: Path, *, server_names: str = "IP:127.0.0.1,DNS:localhost") -> Certs:
    """A CA, a server certificate for ``server_names`` (subjectAltName) and a client
    certificate ``CN=zkw-client,O=zkwarden``."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=zkwarden test CA", cwd=folder)
    _issue(folder, "server", "/CN=zk-server",
           f"subjectAltName={server_names}\nextendedKeyUsage=serverAuth\n")
    _issue(folder, "client", "/O=zkwarden/CN=zkw-client", "extendedKeyUsage=clientAuth\n")
    bundle = folder / "server-bundle.pem"
    bundle.write_text((folder / "server.key").read_text() + (folder / "server.pem").read_text())
    return Certs(folder / "ca.pem", bundle, folder / "client.pem", folder / "client.key",
                 "CN=zkw-client,O=zkwarden")
