"""error_for_code (reference section 8), path validation (1.2), connect strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zkwarden import errors, paths
from zkwarden.errors import ConfigurationError, InvalidPathError
from zkwarden.hosts import DEFAULT_PORT, HostPort, parse_connect_string

# --- error codes ------------------------------------------------------------------------

SERVER_CODES: dict[int, type[errors.ServerError]] = {
    -1: errors.SystemZookeeperError,
    -2: errors.RuntimeInconsistencyError,
    -3: errors.DataInconsistencyError,
    -5: errors.MarshallingError,
    -6: errors.UnimplementedError,
    -7: errors.OperationTimeoutError,
    -8: errors.BadArgumentsError,
    -12: errors.UnknownSessionError,
    -13: errors.NewConfigNoQuorumError,
    -14: errors.ReconfigInProgressError,
    -100: errors.APIError,
    -101: errors.NoNodeError,
    -102: errors.NoAuthError,
    -103: errors.BadVersionError,
    -108: errors.NoChildrenForEphemeralsError,
    -110: errors.NodeExistsError,
    -111: errors.NotEmptyError,
    -113: errors.InvalidCallbackError,
    -114: errors.InvalidACLError,
    -118: errors.SessionMovedError,
    -119: errors.NotReadOnlyError,
    -120: errors.EphemeralOnLocalSessionError,
    -121: errors.NoWatcherError,
    -123: errors.ReconfigDisabledError,
    -124: errors.SessionClosedRequireSaslAuthError,
    -125: errors.QuotaExceededError,
    -127: errors.ThrottledOpError,
}
SESSION_CODES: dict[int, type[errors.ZooKeeperError]] = {
    -4: errors.ConnectionLossError,
    -112: errors.SessionExpiredError,
    -115: errors.AuthFailedError,
    -122: errors.RequestTimeoutError,
}
# Section 8: "Not defined: -9 to -11, -104 to -107, -109, -116, -117 and -126."
UNDEFINED = [-9, -10, -11, -104, -105, -106, -107, -109, -116, -117, -126]


@pytest.mark.parametrize("code, cls", sorted(SERVER_CODES.items()))
def test_server_codes_map_to_classes(code: int, cls: type[errors.ServerError]) -> None:
    exc = errors.error_for_code(code)
    assert type(exc) is cls
    assert exc.code == code
    assert isinstance(exc, errors.ServerError)
    assert isinstance(exc, errors.ZooKeeperError)
    with_path = errors.error_for_code(code, "/some/node")
    assert with_path.path == "/some/node"  # type: ignore[attr-defined]
    assert "/some/node" in str(with_path)


@pytest.mark.parametrize("code, cls", sorted(SESSION_CODES.items()))
def test_session_codes_map_to_session_classes(
    code: int, cls: type[errors.ZooKeeperError]
) -> None:
    exc = errors.error_for_code(code, "/p")
    assert type(exc) is cls
    assert str(code) in str(exc)


def test_every_code_of_the_reference_is_known() -> None:
    # Section 8 table, minus OK (0).
    reference = {
        -1, -2, -3, -4, -5, -6, -7, -8, -12, -13, -14, -100, -101, -102, -103, -108, -110,
        -111, -112, -113, -114, -115, -118, -119, -120, -121, -122, -123, -124, -125, -127,
    }  # fmt: skip
    assert reference == set(SERVER_CODES) | set(SESSION_CODES)
    for code in reference:
        assert not isinstance(errors.error_for_code(code), errors.UnknownServerError)


@pytest.mark.parametrize("code", UNDEFINED + [0, 1, 42, -128, -999, 2**31 - 1, -(2**31)])
def test_unknown_codes(code: int) -> None:
    exc = errors.error_for_code(code)
    assert type(exc) is errors.UnknownServerError
    assert exc.unknown_code == code
    assert str(code) in str(exc)


@settings(max_examples=100, deadline=None, database=None)
@given(st.integers(-(2**31), 2**31 - 1), st.none() | st.text(max_size=10))
def test_error_for_code_never_raises(code: int, path: str | None) -> None:
    exc = errors.error_for_code(code, path)
    assert isinstance(exc, errors.ZooKeeperError)


def test_retriable_flags() -> None:
    assert errors.ConnectionLossError.retriable
    assert errors.RequestTimeoutError.retriable
    assert not errors.SessionExpiredError.retriable
    assert not errors.NoNodeError.retriable


# --- paths.validate ---------------------------------------------------------------------

VALID = [
    "/",
    "/a",
    "/a/b/c",
    "/zookeeper",
    "/a.b",
    "/.a",
    "/a.",
    "/...",
    "/a/.../b",
    "/a..b",
    "/a b",
    "/é/ü",
    "/\u00a0",  # just above the C1 range
    "/\u007e",  # "~", just below DEL
    "/\uf900",  # just above the private-use range
    "/\uffef",  # just below the specials
    "/-_:@=+",
]
INVALID = [
    "",
    "a",
    "a/b",
    "//",
    "/a/",
    "/a//b",
    "//a",
    "/.",
    "/..",
    "/a/.",
    "/a/..",
    "/a/./b",
    "/a/../b",
    "/a\x00",
    "/a\x01b",
    "/\x1f",
    "/\x7f",
    "/\x9f",
    "/\ud800",
    "/\ue000",  # private use: rejected by the server
    "/\uf8ff",
    "/\ufff0",
    "/\uffff",
    "/x\U0001f600",  # non-BMP: the server sees surrogates
]


@pytest.mark.parametrize("path", VALID)
def test_valid_paths(path: str) -> None:
    assert paths.validate(path) == path


@pytest.mark.parametrize("path", INVALID, ids=[repr(p) for p in INVALID])
def test_invalid_paths(path: str) -> None:
    with pytest.raises(InvalidPathError):
        paths.validate(path)


@pytest.mark.parametrize("path", [None, b"/a", 1])
def test_non_string_path(path: object) -> None:
    with pytest.raises(InvalidPathError):
        paths.validate(path)  # type: ignore[arg-type]


def test_sequential_allows_trailing_slash() -> None:
    # The server validates path + "1" for sequential nodes.
    assert paths.validate("/a/", sequential=True) == "/a/"
    assert paths.validate("/a/b-", sequential=True) == "/a/b-"
    assert paths.validate("/", sequential=True) == "/"
    with pytest.raises(InvalidPathError):
        paths.validate("/a//", sequential=True)
    with pytest.raises(InvalidPathError):
        paths.validate("//", sequential=True)


def test_invalid_path_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        paths.validate("relative")


# --- connect strings --------------------------------------------------------------------

CONNECT_STRINGS: list[tuple[str, list[tuple[str, int]], str]] = [
    ("localhost", [("localhost", 2181)], ""),
    ("localhost:2182", [("localhost", 2182)], ""),
    ("h1:2181,h2:2182,h3", [("h1", 2181), ("h2", 2182), ("h3", 2181)], ""),
    ("h1:2181,h2:2181/app", [("h1", 2181), ("h2", 2181)], "/app"),
    ("h1/app/sub", [("h1", 2181)], "/app/sub"),
    ("h1:2181/", [("h1", 2181)], ""),  # "/" chroot means none
    ("[::1]:2181", [("::1", 2181)], ""),
    ("[::1]", [("::1", 2181)], ""),
    ("[fe80::1%eth0]:2888,10.0.0.1:2181/c", [("fe80::1%eth0", 2888), ("10.0.0.1", 2181)], "/c"),
    ("[2001:db8::1]:1/chroot", [("2001:db8::1", 1)], "/chroot"),
    ("::1", [("::1", 2181)], ""),  # bare IPv6 without a port
    (" h1:2181 , h2:2182 ", [("h1", 2181), ("h2", 2182)], ""),
    ("zk_1.svc.cluster.local.:2181", [("zk_1.svc.cluster.local.", 2181)], ""),
    ("2001:db8::7", [("2001:db8::7", 2181)], ""),
    ("h:65535", [("h", 65535)], ""),
]


@pytest.mark.parametrize("text, hosts, chroot", CONNECT_STRINGS)
def test_parse_connect_string(text: str, hosts: list[tuple[str, int]], chroot: str) -> None:
    cs = parse_connect_string(text)
    assert cs.hosts == tuple(HostPort(h, p) for h, p in hosts)
    assert cs.chroot == chroot


def test_default_port() -> None:
    assert DEFAULT_PORT == 2181


def test_connect_string_str_roundtrip() -> None:
    cs = parse_connect_string("[::1]:2181,h:2182/app")
    assert str(cs) == "[::1]:2181,h:2182/app"
    assert parse_connect_string(str(cs)) == cs


BAD_CONNECT_STRINGS = [
    "",
    "   ",
    "h:abc",
    "h:-1",
    "h:0",
    "h:65536",
    ":2181",
    "h1,,h2",
    "h1,",
    "[::1",
    "[::1]x",
    "[::1]:abc",
    "[]:2181",
    "h:2181/app/",  # trailing slash in chroot
    "h:2181/a//b",
    "h:2181/a/../b",
    "h:\u00b2",  # a digit to str.isdigit(), not to int()
    # Not IPv6 literals, although they have two colons: checked, not assumed.
    "garbage::",
    "zz::zz",
    "[zz::zz]:2181",
    "[::1%]:2181",
    # Not host names.
    "zk 1:2181",
    "h1:2181, zk 2:2181",
    "h\u00e9:2181",
    "a..b:2181",
    "-h:2181",
    "x" * 254,
]


@pytest.mark.parametrize("text", BAD_CONNECT_STRINGS, ids=[repr(t) for t in BAD_CONNECT_STRINGS])
def test_bad_connect_strings(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_connect_string(text)


def test_connect_string_must_be_str() -> None:
    with pytest.raises(ConfigurationError):
        parse_connect_string(None)  # type: ignore[arg-type]


def test_bad_connect_string_names_the_host() -> None:
    with pytest.raises(ConfigurationError, match="'zz::zz'"):
        parse_connect_string("h1:2181,zz::zz")
    with pytest.raises(ConfigurationError, match="'zk 1'"):
        parse_connect_string("zk 1:2181")


# --- timeouts at the API boundary ---------------------------------------------------------

# The session timeout travels as int32 milliseconds: 2**31 - 1 ms is the most it can be.
_TOO_LONG = [float("inf"), float("nan"), 1e9, 2147483.648, 1e7, -1.0, 0.0]


@pytest.mark.parametrize("value", _TOO_LONG, ids=repr)
def test_session_timeout_out_of_range_is_a_configuration_error(value: float) -> None:
    from zkwarden import AsyncClient, Client

    with pytest.raises(ConfigurationError, match="session_timeout"):
        AsyncClient("127.0.0.1:2181", session_timeout=value)
    with pytest.raises(ConfigurationError, match="session_timeout"):
        Client("127.0.0.1:2181", session_timeout=value)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e9, 0.0], ids=repr)
def test_connect_timeout_out_of_range_is_a_configuration_error(value: float) -> None:
    from zkwarden import AsyncClient

    with pytest.raises(ConfigurationError, match="connect_timeout"):
        AsyncClient("127.0.0.1:2181", connect_timeout=value)


def test_largest_session_timeout_the_wire_carries_is_accepted() -> None:
    from zkwarden import AsyncClient

    AsyncClient("127.0.0.1:2181", session_timeout=(2**31 - 1) / 1000)
