"""DIGEST-MD5 (RFC 2831): the RFC's worked example, the parser, failure modes, and the
exchange against a real ZooKeeper server driven by hand (no client engine)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkwarden import SASLOptions
from zkwarden.errors import AuthFailedError
from zkwarden.protocol.sasl_digest import DigestMD5, parse_challenge
from zkwarden.testing import ZooKeeperServer

from ._raw import RawConnection

# RFC 2831 section 4, example 1 (IMAP): the challenge, the client's cnonce, and the
# response and rspauth values printed there.
RFC_CHALLENGE = (b'realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",qop="auth",'
                 b'algorithm=md5-sess,charset=utf-8')
RFC_RESPONSE = "d388dad90d4bbd760a152321f2143af7"
RFC_RSPAUTH = b"rspauth=ea40f60335c427b5527b84dbabcdfffd"


def rfc_mechanism() -> DigestMD5:
    return DigestMD5("chris", "secret", service="imap", server_name="elwood.innosoft.com",
                     cnonce="OA6MHXh6VqTrRk")


def test_rfc2831_example_response_and_rspauth() -> None:
    mech = rfc_mechanism()
    assert mech.initial_response() == b""
    response = mech.evaluate(RFC_CHALLENGE)
    assert response is not None
    fields = parse_challenge(response)
    assert fields["response"] == RFC_RESPONSE
    assert fields["digest-uri"] == "imap/elwood.innosoft.com"
    assert fields["nc"] == "00000001" and fields["qop"] == "auth"
    assert fields["cnonce"] == "OA6MHXh6VqTrRk" and fields["username"] == "chris"
    assert not mech.complete
    assert mech.evaluate(RFC_RSPAUTH) is None
    assert mech.complete


def test_wrong_rspauth_is_refused() -> None:
    mech = rfc_mechanism()
    mech.initial_response()
    mech.evaluate(RFC_CHALLENGE)
    with pytest.raises(AuthFailedError, match="rspauth"):
        mech.evaluate(b"rspauth=00000000000000000000000000000000")
    assert not mech.complete


def test_missing_rspauth_is_refused() -> None:
    mech = rfc_mechanism()
    mech.initial_response()
    mech.evaluate(RFC_CHALLENGE)
    with pytest.raises(AuthFailedError):
        mech.evaluate(b"")
    assert not mech.complete


@pytest.mark.parametrize("challenge, match", [
    (b'realm="r",qop="auth",algorithm=md5-sess', "nonce"),
    (b'nonce="n",qop="auth-conf"', "md5-sess"),
    (b'nonce="n",qop="auth-int,auth-conf",algorithm=md5-sess', "qop"),
    (b'nonce="unterminated', "unterminated"),
    (b"x" * 2048, "too long"),
    (b"\xff\xfe", "UTF-8"),
])
def test_bad_challenges(challenge: bytes, match: str) -> None:
    mech = DigestMD5("u", "p")
    mech.initial_response()
    with pytest.raises(AuthFailedError, match=match):
        mech.evaluate(challenge)


def test_token_after_completion_is_refused() -> None:
    mech = rfc_mechanism()
    mech.initial_response()
    mech.evaluate(RFC_CHALLENGE)
    mech.evaluate(RFC_RSPAUTH)
    with pytest.raises(AuthFailedError):
        mech.evaluate(b"rspauth=x")


def test_parser_quoting_and_repeated_realms() -> None:
    got = parse_challenge(b'realm="a",realm="b\\"c", nonce="x,y" ,, algorithm=md5-sess')
    assert got == {"realm": 'a\0b"c', "nonce": "x,y", "algorithm": "md5-sess"}


def test_password_not_in_repr_or_errors() -> None:
    mech = DigestMD5("alice", "hunter2-secret")
    assert "hunter2" not in repr(mech)
    mech.initial_response()
    try:
        mech.evaluate(b'nonce="n",algorithm=md5-sess')
        mech.evaluate(b"rspauth=bad")
    except AuthFailedError as exc:
        assert "hunter2" not in str(exc)
    else:  # pragma: no cover
        raise AssertionError("bad rspauth accepted")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_any_challenge_gives_a_response_or_auth_failed(challenge: bytes) -> None:
    mech = DigestMD5("u", "p")
    mech.initial_response()
    try:
        out = mech.evaluate(challenge)
    except AuthFailedError:
        return
    assert out is not None and b"response=" in out


@pytest.fixture(scope="module")
def sasl_server() -> ZooKeeperServer:
    with ZooKeeperServer(sasl_users={"alice": "pw-alice", "bob": "p\u00e4ss \"q\""}) as server:
        yield server  # type: ignore[misc]


@pytest.mark.parametrize("user, password, authzid", [
    ("alice", "pw-alice", None),
    ("alice", "pw-alice", "alice"),
    ("bob", "p\u00e4ss \"q\"", None),
])
def test_real_server_accepts_and_names_the_identity(
    sasl_server: ZooKeeperServer, user: str, password: str, authzid: str | None
) -> None:
    with RawConnection(sasl_server.host, sasl_server.port) as conn:
        mech = DigestMD5(user, password, authzid=authzid)
        assert conn.authenticate(mech) == 0
        assert mech.complete  # the server's rspauth was verified
        assert ("sasl", user) in conn.whoami()


def test_real_server_refuses_a_wrong_password(sasl_server: ZooKeeperServer) -> None:
    with RawConnection(sasl_server.host, sasl_server.port) as conn:
        mech = DigestMD5("alice", "not-the-password")
        assert conn.authenticate(mech) == -115  # AuthFailed, then the server closes
        assert not mech.complete


def test_real_server_refuses_an_unknown_user(sasl_server: ZooKeeperServer) -> None:
    with RawConnection(sasl_server.host, sasl_server.port) as conn:
        assert conn.authenticate(DigestMD5("mallory", "x")) == -115


def test_wrong_server_name_is_refused(sasl_server: ZooKeeperServer) -> None:
    # The digest-uri binds the response to the server: another name does not pass.
    with RawConnection(sasl_server.host, sasl_server.port) as conn:
        assert conn.authenticate(DigestMD5("alice", "pw-alice", server_name="other")) != 0


def test_options_with_a_password_file_against_the_real_server(
    sasl_server: ZooKeeperServer, tmp_path: Path
) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("pw-alice\n")  # the trailing newline is not part of the password
    bad.write_text("pw-alice \n")
    for path, expected in ((good, 0), (bad, -115)):
        factory = SASLOptions(username="alice", password_file=str(path)).factory()
        with RawConnection(sasl_server.host, sasl_server.port) as conn:
            assert conn.authenticate(factory(sasl_server.host)) == expected
