"""SASLOptions: validation, secrets kept out of repr/str/errors, password sources."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zkwarden import SASLOptions
from zkwarden.errors import ConfigurationError
from zkwarden.protocol.sasl_digest import parse_challenge

SECRET = "s3cr3t-Pa55word"


def test_repr_and_str_hide_the_password() -> None:
    opts = SASLOptions(mechanism="digest-md5", username="alice", password=SECRET)
    assert opts.mechanism == "DIGEST-MD5"
    for text in (repr(opts), str(opts), f"{opts}", repr([opts])):
        assert SECRET not in text
        assert "<hidden>" in text and "alice" in text


@pytest.mark.parametrize("kwargs, match", [
    ({"mechanism": "PLAIN", "username": "a", "password": "p"}, "unknown SASL mechanism"),
    ({"mechanism": "DIGEST-MD5", "password": "p"}, "username"),
    ({"mechanism": "DIGEST-MD5", "username": "a"}, "exactly one"),
    ({"mechanism": "DIGEST-MD5", "username": "a", "password": "p", "password_file": "/f"},
     "exactly one"),
    ({"mechanism": "DIGEST-MD5", "username": "a", "password": "p", "keytab": "/k"}, "GSSAPI"),
    ({"mechanism": "GSSAPI", "password": "p"}, "no password"),
    ({"mechanism": "GSSAPI", "username": "a"}, "principal"),
    ({"mechanism": "GSSAPI", "service": "zoo/keeper"}, "service"),
    ({"mechanism": "GSSAPI", "keytab": ""}, "empty"),
    ({"mechanism": "DIGEST-MD5", "username": "a\0b", "password": "p"}, "NUL"),
])
def test_validation(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        SASLOptions(**kwargs)  # type: ignore[arg-type]
    assert "p" != str(info.value)  # the message is about the option, not its value


def _digest_response(opts: SASLOptions) -> dict[str, str]:
    mech = opts.factory()("127.0.0.1")
    mech.initial_response()
    out = mech.evaluate(b'realm="zk-sasl-md5",nonce="abc",charset=utf-8,algorithm=md5-sess')
    assert out is not None
    return parse_challenge(out)


def test_factory_makes_a_fresh_digest_mechanism_per_connection() -> None:
    factory = SASLOptions(username="alice", password=SECRET).factory()
    a, b = factory("h1"), factory("h2")
    assert a is not b and a.name == "DIGEST-MD5"
    fields = _digest_response(SASLOptions(username="alice", password=SECRET))
    # The observed server defaults: digest-uri zookeeper/zk-sasl-md5, realm as offered.
    assert fields["digest-uri"] == "zookeeper/zk-sasl-md5"
    assert fields["realm"] == "zk-sasl-md5"
    assert SECRET not in repr(a)


def test_password_sources_errors_name_the_source_not_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigurationError, match="empty"):
        SASLOptions(username="a", password_file=str(empty)).factory()
    with pytest.raises(ConfigurationError, match="cannot read"):
        SASLOptions(username="a", password_file=str(tmp_path / "missing")).factory()
    big = tmp_path / "big"
    big.write_bytes(b"x" * 5000)
    with pytest.raises(ConfigurationError, match="larger"):
        SASLOptions(username="a", password_file=str(big)).factory()
    monkeypatch.delenv("ZKW_TEST_PW", raising=False)
    with pytest.raises(ConfigurationError, match="ZKW_TEST_PW"):
        SASLOptions(username="a", password_env="ZKW_TEST_PW").factory()
    monkeypatch.setenv("ZKW_TEST_PW", SECRET)
    mech = SASLOptions(username="a", password_env="ZKW_TEST_PW").factory()("h")
    assert SECRET not in repr(mech)
    assert os.environ["ZKW_TEST_PW"] == SECRET


def test_gssapi_without_the_extra_or_keytab_is_a_configuration_error(tmp_path: Path) -> None:
    opts = SASLOptions(mechanism="GSSAPI", keytab=str(tmp_path / "missing.keytab"))
    with pytest.raises(ConfigurationError):
        opts.factory()
