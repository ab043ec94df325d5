"""Issue 15: ``zkwarden ensemble`` shows the members and changes them (reconfig)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from zkwarden.cli import main
from zkwarden.testing import ZooKeeperEnsemble

SUPER = ("super", "cli-test")
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def cli_ensemble() -> Iterator[ZooKeeperEnsemble]:
    ensemble = ZooKeeperEnsemble(3, reconfig=True, superuser=SUPER)
    ensemble.start()
    try:
        yield ensemble
    finally:
        ensemble.stop()


@pytest.fixture
def run(cli_ensemble: ZooKeeperEnsemble, capsys: pytest.CaptureFixture[str]) -> Run:
    def _run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--hosts", cli_ensemble.connect_string, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return _run


def test_shows_members_modes_lag_and_connections(run: Run,
                                                 cli_ensemble: ZooKeeperEnsemble) -> None:
    code, out, err = run("ensemble", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert int(data["version"], 16) >= 0x100000000
    members = data["members"]
    assert [m["id"] for m in members] == [1, 2, 3]
    assert sorted(m["mode"] for m in members) == ["follower", "follower", "leader"]
    leader = cli_ensemble.leader()
    assert next(m for m in members if m["mode"] == "leader")["id"] == leader + 1
    assert all(m["error"] is None and m["zxid_lag"] is not None and m["zxid_lag"] >= 0
               for m in members)
    # the command's own connection is counted on one member (srvr counts itself too)
    assert sum(m["connections"] for m in members) >= 1
    code, out, err = run("ensemble")
    assert code == 0, err
    assert "leader" in out and "participant" in out and "ZXID LAG" in out


def test_add_and_remove_wrap_reconfig(run: Run, cli_ensemble: ZooKeeperEnsemble) -> None:
    ens = cli_ensemble
    index = ens.add_member()
    line = ens.server_line(index)
    code, out, err = run("ensemble", "add", line)
    assert code != 0 and "auth" in err.lower(), (out, err)  # no superuser: NoAuth
    auth = ["--auth", "digest:" + ":".join(SUPER)]
    code, out, err = run("ensemble", "add", line, *auth, "--json")
    assert code == 0, err
    added = json.loads(out)
    assert [m["id"] for m in added["members"]] == [1, 2, 3, 4]
    code, out, err = run("ensemble", "--json")
    assert code == 0, err
    assert next(m for m in json.loads(out)["members"] if m["id"] == 4)["mode"] == "follower"
    # stale --from-config: refused, nothing removed
    code, out, err = run("ensemble", "remove", "4", "--from-config", "100000000", *auth)
    assert code != 0 and "version" in err.lower(), (out, err)
    code, out, err = run("ensemble", "remove", "4", "--from-config", added["version"][2:],
                         *auth, "--json")
    assert code == 0, err
    assert [m["id"] for m in json.loads(out)["members"]] == [1, 2, 3]
    ens.remove_member(index)
