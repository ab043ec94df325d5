"""How tests/test_readme.py runs the README's Security blocks as written.

Each block names what a production host has: a connect string such as ``zk1:2181``, a
password file, a keytab, certificate files, a principal, a DN.  The setups below read
those names from the block itself, build the matching thing for real (a ZooKeeper server
with the block's SASL user, an MIT KDC of the block's realm with its principal, a CA and
a client certificate with the block's DN), put each secret file in the test's temporary
directory, and say which strings of the block to replace by the test's own (connect
strings and absolute paths only, as the plain blocks' ``127.0.0.1:2181`` is).  Relative
paths (``ca.pem``) are made in the block's working directory and need no replacing.
"""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from zkwarden.agent.config import load_config
from zkwarden.errors import ConfigurationError
from zkwarden.protocol.records import ClientInfo
from zkwarden.testing import ZooKeeperServer
from zkwarden.testing.kdc import KerberosKDC


@dataclass
class Setup:
    """What a block needs to run against the server made for it."""

    #: README text -> the test's (connect strings, absolute paths).
    replacements: dict[str, str]
    #: Extra environment of the block's process (a Kerberos realm's krb5.conf).
    env: dict[str, str] = field(default_factory=dict)
    #: Text each run must print: the identity the block's comment promises.
    expect: tuple[str, ...] = ()


def quoted(text: str, key: str) -> str:
    """The string given to ``key=`` in the block (``key="value"``).

    Raises:
        AssertionError: the block does not say ``key="..."``.
    """
    found = re.search(rf'\b{re.escape(key)}\s*=\s*"([^"]*)"', text)
    assert found, f'the block no longer says {key}="..."'
    return found.group(1)


def connect_string(text: str) -> str:
    """The connect string of the block's ``AsyncClient("...")``."""
    found = re.search(r'\bAsyncClient\(\s*"([^"]+)"', text)
    assert found, 'the block no longer says AsyncClient("...")'
    return found.group(1)


def _place(path: str, cwd: Path, replacements: dict[str, str]) -> Path:
    """Where the block's file ``path`` is made: relative ones where the block runs, an
    absolute one (``/run/secrets/zk``) in ``cwd`` under its own name, replaced."""
    if not Path(path).is_absolute():
        return cwd / path
    local = cwd / Path(path).name
    replacements[path] = str(local)
    return local


@contextmanager
def sasl_digest(text: str, cwd: Path) -> Iterator[Setup]:
    """A server that knows the block's DIGEST-MD5 user, whose password is in the file
    the block reads (the README shows no password, so one is made up)."""
    user = quoted(text, "username")
    replacements: dict[str, str] = {}
    password = secrets.token_urlsafe(16)
    _place(quoted(text, "password_file"), cwd, replacements).write_text(password + "\n")
    with ZooKeeperServer(sasl_users={user: password}) as server:
        replacements[connect_string(text)] = server.connect_string
        yield Setup(replacements, expect=(repr(ClientInfo("sasl", user)),))


@contextmanager
def kerberos(text: str, cwd: Path) -> Iterator[Setup]:
    """A KDC of the block's realm with its client principal (exported to the keytab the
    block names) and the server principal ``zookeeper/<server_name>``, and a server that
    logs in as it.  The block's own names stay: only the keytab's path and the connect
    string are replaced; ``KRB5_CONFIG`` points at the realm (a host's /etc/krb5.conf)."""
    principal = quoted(text, "principal")
    name, _, realm = principal.partition("@")
    replacements: dict[str, str] = {}
    keytab = _place(quoted(text, "keytab"), cwd, replacements)
    with KerberosKDC(realm) as kdc:
        kdc.add_principal(name, str(keytab))
        with ZooKeeperServer(kerberos=kdc.server_setup(host=quoted(text, "server_name"))) as zk:
            replacements[connect_string(text)] = zk.connect_string
            # The client's credential cache is a private one; no KRB5_CLIENT_KTNAME: the
            # block's keytab= must be what logs it in.
            yield Setup(replacements, env=kdc.client_env(),
                        expect=(repr(ClientInfo("sasl", principal)),))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _subject(dn: str) -> str:
    """openssl's ``-subj`` for an RFC 2253 DN (most specific first): ``CN=app,O=example``
    -> ``/O=example/CN=app``, whose Java ``getName()`` is the DN again."""
    return "".join(f"/{part.strip()}" for part in reversed(dn.split(",")))


def _issue(pki: Path, key: Path, cert: Path, subject: str, ext: str) -> None:
    csr, extfile = pki / f"{cert.name}.csr", pki / f"{cert.name}.ext"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", subject, cwd=pki)
    extfile.write_text(ext)
    _openssl("x509", "-req", "-in", str(csr), "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extfile),
             cwd=pki)


@contextmanager
def tls_client_cert(text: str, cwd: Path) -> Iterator[Setup]:
    """A CA (the block's ``cafile``), a client certificate with the DN of the block's
    ``ACL.x509("...")`` (its ``certfile``/``keyfile``), and a server that needs one
    (``ssl.clientAuth=need``) with a certificate for 127.0.0.1, so the hostname check
    the block leaves on passes."""
    dn = re.search(r'\bACL\.x509\(\s*"([^"]+)"', text)
    assert dn, 'the block no longer says ACL.x509("...")'
    replacements: dict[str, str] = {}
    pki = cwd / "pki"
    pki.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=readme test CA", cwd=pki)
    _issue(pki, pki / "server.key", pki / "server.pem", "/CN=zk-server",
           "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    bundle = pki / "server-bundle.pem"
    bundle.write_text((pki / "server.key").read_text() + (pki / "server.pem").read_text())
    _place(quoted(text, "cafile"), cwd, replacements).write_bytes((pki / "ca.pem").read_bytes())
    _issue(pki, _place(quoted(text, "keyfile"), cwd, replacements),
           _place(quoted(text, "certfile"), cwd, replacements), _subject(dn.group(1)),
           "extendedKeyUsage=clientAuth\n")
    with ZooKeeperServer(tls_keystore=bundle, tls_truststore=pki / "ca.pem",
                         client_auth="need") as server:
        replacements[connect_string(text)] = server.secure_connect_string
        yield Setup(replacements, expect=(repr(ClientInfo("x509", dn.group(1))),))


SERVERS: dict[str, Callable[[str, Path], AbstractContextManager[Setup]]] = {
    "sasl-digest": sasl_digest,
    "kerberos": kerberos,
    "tls-client-cert": tls_client_cert,
}


def check_secret_files(text: str, cwd: Path) -> None:
    """The agent configuration naming secret files: each absolute path becomes a file of
    the test (a ``*_file`` gets a made-up secret), then the agent's loader must accept it
    and keep every path; and the rules its comments state hold: without ``allow_remote``
    the non-loopback ``listen`` is refused, and so is a password in the file itself.

    Raises:
        ConfigurationError: the loader refused the block (the message names the key).
        AssertionError: a path was not kept, or a refusal the comments promise is missing.
    """
    replacements: dict[str, str] = {}
    paths: dict[str, Path] = {}
    for key, path in re.findall(r'^\s*(\w+)\s*=\s*"(/[^"]*)"', text, re.M):
        local = paths[key] = _place(path, cwd, replacements)
        if key.endswith("_file"):
            local.write_text(secrets.token_urlsafe(16) + "\n")
    assert paths, "the block names no file"
    program = text
    for old, new in replacements.items():
        program = program.replace(old, new)

    def load(document: str) -> None:
        config_file = cwd / "agent.toml"
        config_file.write_text(document, encoding="utf-8")
        config = load_config(str(config_file))
        kept = {"token_file": config.agent.token_file, "unix_socket": config.agent.unix_socket,
                "password_file": config.zookeeper.sasl and config.zookeeper.sasl.password_file}
        for key, local in paths.items():
            assert kept.get(key, str(local)) == str(local), f"{key}: {kept.get(key)!r}"

    load(program)
    if re.search(r"^allow_remote\s*=\s*true", program, re.M):
        try:
            load(re.sub(r"^allow_remote\s*=.*\n", "", program, flags=re.M))
        except ConfigurationError as exc:
            assert "allow_remote" in str(exc), exc
        else:
            raise AssertionError("a remote listen address without allow_remote was accepted")
    if "[zookeeper.sasl]" in program:
        try:
            load(program.replace("[zookeeper.sasl]\n", '[zookeeper.sasl]\npassword = "pw"\n'))
        except ConfigurationError as exc:
            assert "password" in str(exc), exc
        else:
            raise AssertionError("a password written in the configuration was accepted")
