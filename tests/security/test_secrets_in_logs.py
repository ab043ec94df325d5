"""No secret reaches a log record, an exception message or a repr: failed SASL exchanges
(by hand against a real server), TLS failures, and the agent's configuration errors, all
captured at DEBUG level."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from zkwarden import AsyncClient, SASLOptions
from zkwarden.agent import parse_config
from zkwarden.agent.config import load_config
from zkwarden.errors import AuthFailedError, ConfigurationError, ConnectionLossError
from zkwarden.protocol.sasl_digest import DigestMD5
from zkwarden.testing import ZooKeeperServer
from zkwarden.tls import tls_context

from ._certs import make_certs
from ._raw import RawConnection

SECRET = "Zz-secret-7f3a9c-never-log-me"


def assert_clean(caplog: pytest.LogCaptureFixture, *texts: object) -> None:
    assert SECRET not in caplog.text
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)
    for text in texts:
        assert SECRET not in str(text) and SECRET not in repr(text)


def test_failed_sasl_exchanges(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caught: list[object] = []
    with caplog.at_level(logging.DEBUG), ZooKeeperServer(sasl_users={"alice": "right"}) as zk:
        opts = SASLOptions(username="alice", password=SECRET)
        caught.append(opts)
        mech = opts.factory()(zk.host)
        caught.append(mech)
        with RawConnection(zk.host, zk.port) as conn:
            assert conn.authenticate(mech) == -115
        # A forged server proof: the error explains, and names no secret.
        mech = DigestMD5("alice", SECRET)
        mech.initial_response()
        mech.evaluate(b'nonce="n",algorithm=md5-sess,charset=utf-8')
        with pytest.raises(AuthFailedError) as info:
            mech.evaluate(b"rspauth=0123")
        caught.append(info.value)
        secret_file = tmp_path / "pw"
        secret_file.write_text(SECRET)
        bad = SASLOptions(username="alice", password_file=str(tmp_path / "missing"))
        with pytest.raises(ConfigurationError) as info2:
            bad.factory()
        caught += [info2.value, bad]
    assert_clean(caplog, *caught)


async def test_tls_failures(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text(SECRET)
    caught: list[object] = []
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ConfigurationError) as info:
            tls_context(certfile=certs.client_cert, keyfile=certs.ca,
                        key_password_file=passphrase)
        caught.append(info.value)
        (tmp_path / "other").mkdir()
        other = make_certs(tmp_path / "other")
        with ZooKeeperServer(tls_keystore=certs.server) as zk:
            # A client that does not trust the server's CA, carrying a secret credential.
            client = AsyncClient(zk.secure_connect_string, session_timeout=2.0,
                                 tls=tls_context(cafile=other.ca),
                                 auth=[("digest", f"alice:{SECRET}")])
            with pytest.raises(ConnectionLossError) as failed:
                await client.start(timeout=3.0)
            await client.close()
            caught += [failed.value, client]
    assert_clean(caplog, *caught)


async def test_client_with_wrong_digest_auth(
    caplog: pytest.LogCaptureFixture, zk_hosts: str
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with AsyncClient(zk_hosts, session_timeout=2.0,
                               auth=[("digest", f"alice:{SECRET}")]) as zk:
            await zk.exists("/")
        client = AsyncClient(zk_hosts, session_timeout=2.0, auth=[("nosuchscheme", SECRET)])
        with pytest.raises((AuthFailedError, ConnectionLossError)) as info:
            await client.start(timeout=3.0)
        await client.close()
    assert_clean(caplog, info.value)


def test_agent_config_errors(caplog: pytest.LogCaptureFixture, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZKW_SECRET", SECRET)
    documents = [
        {"zookeeper": {"sasl": {"username": "a", "password": SECRET}}},
        {"zookeeper": {"sasl": {"mechanism": "GSSAPI", "username": "a",
                                "password_env": "ZKW_SECRET"}}},
        {"zookeeper": {"sasl": {"mechanism": "PLAIN", "username": "a",
                                "password_env": "ZKW_SECRET"}}},
        {"zookeeper": {"auth": [{"scheme": "digest", "credentials": "${ZKW_SECRET}",
                                 "extra": 1}]}},
    ]
    caught: list[object] = []
    with caplog.at_level(logging.DEBUG):
        for doc in documents:
            with pytest.raises(ConfigurationError) as info:
                parse_config(doc, source="agent.toml")
            caught.append(info.value)
        path = tmp_path / "agent.toml"
        path.write_text(f'[zookeeper.sasl]\nusername = "a"\npassword = "{SECRET}"\n')
        with pytest.raises(ConfigurationError) as info:
            load_config(str(path))
        caught.append(info.value)
        ok = parse_config({"zookeeper": {"sasl": {"username": "a",
                                                  "password_env": "ZKW_SECRET"}}}, source="t")
        caught.append(ok)
        assert ok.zookeeper.sasl is not None
        caught.append(ok.zookeeper.sasl.factory()("h"))
    assert_clean(caplog, *caught)
