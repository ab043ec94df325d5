"""Issue 15: parsing /zookeeper/config and the rebalancing decision (no server needed)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from zkwarden._aio.ensemble import choose_move, parse_config
from zkwarden.errors import InvalidArgumentError
from zkwarden.hosts import HostPort

CONFIG = (
    "server.1=10.0.0.1:2888:3888:participant;10.0.0.1:2181\n"
    "server.2=10.0.0.2:2888:3888:participant;0.0.0.0:2181\n"
    "server.3=[::1]:2888:3888:observer;[::1]:2182\n"
    "server.4=10.0.0.4:2888:3888;2181\n"
    "version=10000000a"
)


def test_parse_members_roles_addresses_version() -> None:
    cfg = parse_config(CONFIG.encode())
    assert cfg.version == 0x10000000A
    assert [m.id for m in cfg.members] == [1, 2, 3, 4]
    assert [m.id for m in cfg.participants] == [1, 2, 4]
    assert [m.id for m in cfg.observers] == [3]
    # a wildcard or missing client host means the quorum host
    assert cfg.client_addresses == [HostPort("10.0.0.1", 2181), HostPort("10.0.0.2", 2181),
                                    HostPort("::1", 2182), HostPort("10.0.0.4", 2181)]
    assert cfg.member(3) is not None and cfg.member(3).role == "observer"  # type: ignore[union-attr]
    assert cfg.member_at(HostPort("10.0.0.4", 2181)) == cfg.member(4)
    # a member written back parses to the same server
    for m in cfg.members:
        (again,) = parse_config(m.server_line).members
        assert (again.id, again.host, again.quorum_port, again.election_port, again.role,
                again.client_address) == (m.id, m.host, m.quorum_port, m.election_port,
                                          m.role, m.client_address)


def test_standalone_config_is_empty() -> None:
    cfg = parse_config(b"")
    assert cfg.members == () and cfg.version == 0 and cfg.client_addresses == []


@pytest.mark.parametrize("line", ["server.x=h:1:2", "server.1=h:1", "server.1=h:1:2:voter",
                                  "server.1=h:a:2"])
def test_bad_lines_are_refused(line: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_config(line)


def _hosts(*ports: int) -> list[HostPort]:
    return [HostPort("h", p) for p in ports]


def _spread(old: list[HostPort], new: list[HostPort], clients: Counter[HostPort],
            rng: random.Random) -> Counter[HostPort]:
    after: Counter[HostPort] = Counter()
    for host, count in clients.items():
        for _ in range(count):
            after[choose_move(old, new, host, rng) or host] += 1
    return after


def test_growing_moves_the_fair_fraction_to_new_members() -> None:
    rng = random.Random(1)
    old, new = _hosts(1, 2, 3), _hosts(1, 2, 3, 4, 5)
    clients = Counter({h: 3000 for h in old})
    after = _spread(old, new, clients, rng)
    # 1 - 3/5 of each survivor's clients move, evenly over the two newcomers: 1800 each
    for host in new:
        assert 1650 < after[host] < 1950, after


def test_shrinking_spreads_the_displaced_evenly_and_survivors_stay() -> None:
    rng = random.Random(2)
    old, new = _hosts(1, 2, 3, 4, 5), _hosts(3, 4, 5)
    clients = Counter({h: 1000 for h in old})
    after = _spread(old, new, clients, rng)
    assert set(after) == set(new)
    for host in new:
        assert 1550 < after[host] < 1780, after
    for host in new:  # nobody on a survivor moved
        assert choose_move(old, new, host, rng) is None


def test_replacing_members_moves_only_the_displaced_and_fills_newcomers() -> None:
    rng = random.Random(3)
    old, new = _hosts(1, 2, 3), _hosts(2, 3, 4)
    after = _spread(old, new, Counter({h: 3000 for h in old}), rng)
    assert after[HostPort("h", 1)] == 0
    # p_old = 2*(3-3)/(3*(3-2)) = 0: every client of the removed one goes to the newcomer
    assert after == Counter({HostPort("h", 2): 3000, HostPort("h", 3): 3000,
                             HostPort("h", 4): 3000})


def test_no_current_host_or_empty_list_means_stay() -> None:
    rng = random.Random(4)
    assert choose_move(_hosts(1), _hosts(1, 2), None, rng) is None
    assert choose_move(_hosts(1), [], HostPort("h", 1), rng) is None
