"""GSSAPI (Kerberos V5, RFC 4752) against a real MIT KDC and a real ZooKeeper server.

The mechanism is driven by hand over a raw connection (tests/security/_raw.py), so these
prove the mechanism itself; the client engine's use of it is tested with AsyncClient.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import gssapi  # noqa: F401 - a dev dependency: missing is a failure, not a skip
import pytest

from zkwarden import ACL, AsyncClient, Perms, SASLOptions
from zkwarden.errors import AuthFailedError
from zkwarden.testing import ZooKeeperServer
from zkwarden.testing.kdc import KerberosKDC

from ._raw import RawConnection

OP_CREATE_NOAUTH = -102


class Realm:
    def __init__(self, kdc: KerberosKDC, server: ZooKeeperServer) -> None:
        self.kdc, self.server = kdc, server
        self.alice_keytab = kdc.add_principal("alice")
        self.alice = kdc.principal("alice")

    def options(self, **kwargs: str) -> SASLOptions:
        kwargs.setdefault("server_name", "localhost")
        return SASLOptions(mechanism="GSSAPI", **kwargs)

    def connect(self) -> RawConnection:
        return RawConnection(self.server.host, self.server.port)


@pytest.fixture(scope="module")
def realm() -> Iterator[Realm]:
    saved = dict(os.environ)
    with KerberosKDC() as kdc:
        setup = kdc.server_setup()
        with ZooKeeperServer(kerberos=setup) as server:
            os.environ.update(kdc.client_env())
            os.environ.pop("KRB5_CLIENT_KTNAME", None)
            try:
                yield Realm(kdc, server)
            finally:
                os.environ.clear()
                os.environ.update(saved)


@pytest.fixture(autouse=True)
def _fresh_ccache(realm: Realm) -> Iterator[None]:
    # Every test starts with an empty private credential cache and no client keytab.
    cache = os.environ["KRB5CCNAME"].removeprefix("FILE:")
    if os.path.exists(cache):
        os.unlink(cache)
    os.environ.pop("KRB5_CLIENT_KTNAME", None)
    yield
    os.environ.pop("KRB5_CLIENT_KTNAME", None)


def kinit(realm: Realm, *args: str) -> None:
    subprocess.run(["kinit", *args, "-k", "-t", realm.alice_keytab, realm.alice],
                   check=True, capture_output=True, timeout=20, env=os.environ.copy())


def test_keytab_authenticates_as_the_principal(realm: Realm) -> None:
    mech = realm.options(keytab=realm.alice_keytab, principal=realm.alice).factory()("127.0.0.1")
    with realm.connect() as conn:
        assert conn.authenticate(mech) == 0
        assert mech.complete
        assert ("sasl", realm.alice) in conn.whoami()


def test_client_keytab_from_the_environment(realm: Realm) -> None:
    os.environ["KRB5_CLIENT_KTNAME"] = f"FILE:{realm.alice_keytab}"
    with realm.connect() as conn:
        assert conn.authenticate(realm.options().factory()("127.0.0.1")) == 0
        assert ("sasl", realm.alice) in conn.whoami()


def test_default_ccache_after_kinit(realm: Realm) -> None:
    kinit(realm)
    with realm.connect() as conn:
        assert conn.authenticate(realm.options().factory()("127.0.0.1")) == 0
        assert ("sasl", realm.alice) in conn.whoami()


def test_no_credentials_is_auth_failed(realm: Realm) -> None:
    mech = realm.options().factory()("127.0.0.1")
    with pytest.raises(AuthFailedError, match="GSSAPI"):
        mech.initial_response()


def test_expired_ticket_is_auth_failed(realm: Realm) -> None:
    kinit(realm, "-l", "1s")
    time.sleep(2.5)
    with pytest.raises(AuthFailedError, match="GSSAPI"):
        realm.options().factory()("127.0.0.1").initial_response()


def test_unknown_service_principal_is_auth_failed(realm: Realm) -> None:
    mech = realm.options(keytab=realm.alice_keytab, server_name="nosuchhost").factory()("x")
    with pytest.raises(AuthFailedError, match="zookeeper/nosuchhost"):
        mech.initial_response()


def test_deleted_principal_is_auth_failed(realm: Realm) -> None:
    keytab = realm.kdc.add_principal("carol")
    realm.kdc.delete_principal("carol")
    mech = realm.options(keytab=keytab, principal=realm.kdc.principal("carol")).factory()("x")
    with pytest.raises(AuthFailedError):
        mech.initial_response()


async def test_sasl_acl_readable_only_after_kerberos(realm: Realm) -> None:
    async with AsyncClient(realm.server.connect_string, session_timeout=4.0) as zk:
        await zk.create("/krb-only", b"for alice", acl=[ACL.sasl(realm.alice, Perms.READ)])
    with realm.connect() as conn:
        assert conn.get_data_err("/krb-only") == OP_CREATE_NOAUTH
    mech = realm.options(keytab=realm.alice_keytab, principal=realm.alice).factory()("h")
    with realm.connect() as conn:
        assert conn.authenticate(mech) == 0
        assert conn.get_data_err("/krb-only") == 0
