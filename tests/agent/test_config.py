"""Config files: the documented sample parses; each bad file gets one line naming the key
and exit code 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from zkwarden.agent import EXIT_CONFIG, load_config, main, parse_config
from zkwarden.errors import ConfigurationError

from .conftest import SRC

DOCS = Path(__file__).resolve().parents[2] / "docs" / "agent.md"

_SERVICE = '[[service]]\nname = "web"\naddress = "127.0.0.1"\nport = 8080\n'
_CHECK = _SERVICE + '[service.check]\ntype = "http"\nurl = "http://127.0.0.1:8080/h"\n'

# (file text, the key the one-line error must name)
BAD = [
    ('[zookeeper]\nsession_timeout = "soon"\n', "zookeeper.session_timeout"),
    ('[zookeeper]\nhosts = "zk1:abc"\n', "zookeeper.hosts"),
    ('[zookeeper]\nformat = "eureka"\n', "zookeeper.format"),
    ('[zookeeper]\nbase_path = "services"\n', "zookeeper.base_path"),
    ("[zookeeper]\nauth = [{scheme = 1}]\n", "zookeeper.auth[0].scheme"),
    ('[agent]\nlisen = "127.0.0.1:1"\n', "agent.lisen"),
    ('[agent]\nlisten = "localhost"\n', "agent.listen"),
    ('[agent]\nwatch = ["ok", "a/b"]\n', "agent.watch[1]"),
    ("[agent]\nshutdown_timeout = 0\n", "agent.shutdown_timeout"),
    ('[log]\nformat = "xml"\n', "log.format"),
    ('[[service]]\nname = "web"\nport = 1\n', "service[0].address"),
    ('[[service]]\nname = "web"\naddress = "h"\n', "service[0].id"),
    ('[[service]]\nname = ""\naddress = "h"\nport = 1\n', "service[0].name"),
    (_SERVICE.replace("8080", "70000"), "service[0].port"),
    (_SERVICE + "weight = -1\n", "service[0].weight"),
    (_SERVICE + 'tags = "a"\n', "service[0].tags"),
    (_SERVICE + "payload = { zkwarden = 1 }\n", "service[0].payload"),
    (_SERVICE + _SERVICE, "service[1].id"),
    (_SERVICE + '[service.check]\ntype = "ping"\n', "service[0].check.type"),
    (_CHECK + "interval = -1\n", "service[0].check.interval"),
    (_CHECK + 'timeout = "2 parsecs"\n', "service[0].check.timeout"),
    (_CHECK + "rise = 0\n", "service[0].check.rise"),
    (_CHECK + 'fall = "3"\n', "service[0].check.fall"),
    (_CHECK + "expect = 200\n", "service[0].check.expect"),
    (_SERVICE + '[service.check]\ntype = "http"\nurl = "ftp://x"\n', "service[0].check.url"),
    (_SERVICE + '[service.check]\ntype = "command"\ncommand = []\n', "service[0].check.command"),
    ('[[service]]\nname = "w"\nid = "w"\naddress = "h"\n[service.check]\ntype = "tcp"\n',
     "service[0].check.port"),
    ("service = 3\n", "service"),
    ("[zookeeper\nhosts = 1\n", "invalid TOML"),
    # Timeouts the client could not use: not finite, or over the int32 milliseconds the
    # wire carries for the session timeout (the client would never connect).
    ("[zookeeper]\nsession_timeout = inf\n", "zookeeper.session_timeout"),
    ("[zookeeper]\nsession_timeout = nan\n", "zookeeper.session_timeout"),
    ("[zookeeper]\nsession_timeout = 1e9\n", "zookeeper.session_timeout"),
    ("[zookeeper]\nsession_timeout = 2147484\n", "zookeeper.session_timeout"),
    ('[zookeeper]\nsession_timeout = "600h"\n', "zookeeper.session_timeout"),
    ("[zookeeper]\nconnect_timeout = inf\n", "zookeeper.connect_timeout"),
    ("[zookeeper]\nconnect_timeout = 1e12\n", "zookeeper.connect_timeout"),
    # Addresses that are not addresses.
    ('[zookeeper]\nhosts = "garbage::"\n', "zookeeper.hosts"),
    ('[zookeeper]\nhosts = "zz::zz"\n', "zookeeper.hosts"),
    ('[zookeeper]\nhosts = "zk 1:2181"\n', "zookeeper.hosts"),
]


@pytest.mark.parametrize(("text", "key"), BAD, ids=[k for _, k in BAD])
def test_bad_config_one_line_naming_the_key_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    assert main(["-c", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"zkwarden agent: {path}: "), err
    assert key in lines[0], err


@pytest.mark.parametrize(
    "text",
    [
        "[zookeeper]\nsession_timeout = inf\n",
        "[zookeeper]\nsession_timeout = 1e9\n",
        '[zookeeper]\nhosts = "zz::zz"\n',
    ],
)
def test_check_refuses_what_the_client_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    assert main(["-c", str(path), "--check"]) == EXIT_CONFIG
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1, out


def test_largest_session_timeout_the_wire_carries_is_accepted() -> None:
    doc = {"zookeeper": {"session_timeout": 2147483.647, "connect_timeout": 3600}}
    cfg = parse_config(doc)
    assert cfg.zookeeper.session_timeout == 2147483.647


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.toml"
    assert main(["-c", str(path)]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err and str(path) in err


def test_bad_config_subprocess_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(_CHECK + "interval = \"soon\"\n")
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "zkwarden.agent", "-c", str(path)],
        capture_output=True, text=True, timeout=30, env=env,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert "service[0].check.interval" in proc.stderr


def _sample() -> str:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.S)
    assert blocks, "docs/agent.md has no TOML sample"
    return blocks[0]


def test_documented_sample_parses(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(_sample())
    cfg = load_config(str(path))
    assert cfg.zookeeper.hosts == "zk1:2181,zk2:2181,zk3:2181"
    assert cfg.zookeeper.session_timeout == 10.0
    assert cfg.zookeeper.auth == (("digest", "agent:secret"),)
    assert cfg.agent.listen_host == "127.0.0.1" and cfg.agent.listen_port == 8731
    assert cfg.agent.watch == ("billing", "search")
    assert cfg.agent.max_wait == 600.0
    assert cfg.log.format == "json"
    web, cache, worker = cfg.services
    assert (web.name, web.id, web.weight, web.zone, web.tags) == (
        "web", "web-1", 10, "eu-west-1a", ("primary", "v2"))
    assert web.check.type == "http" and web.check.interval == 5.0
    assert (web.check.timeout, web.check.rise, web.check.fall) == (1.0, 2, 3)
    assert cache.id == "10.0.0.5:6379"
    assert (cache.check.type, cache.check.host, cache.check.port) == ("tcp", "10.0.0.5", 6379)
    assert worker.check.command == ("/usr/local/bin/worker-ok", "--quick")
    assert worker.check.timeout == 3.0
    inst = web.instance()
    assert inst.payload == {"version": "2.4.1"} and inst.port == 8080
    assert main(["-c", str(path), "--check"]) == 0


def test_durations_and_defaults() -> None:
    cfg = parse_config(tomllib.loads(_CHECK + 'interval = "250ms"\n'))
    check = cfg.services[0].check
    assert check.interval == 0.25 and check.timeout == 0.25  # min(2s, interval)
    assert (check.rise, check.fall) == (2, 3)
    cfg = parse_config({"service": [{"name": "w", "address": "h", "port": 1}]})
    assert cfg.services[0].check.type == "none"
    assert cfg.zookeeper.base_path == "/services"
    for text, seconds in (("2m", 120.0), ("1.5s", 1.5), ("1h", 3600.0), (3, 3.0)):
        doc = {"zookeeper": {"session_timeout": text}}
        assert parse_config(doc).zookeeper.session_timeout == seconds


def test_relative_snapshot_dir_is_relative_to_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[agent]\nsnapshot_dir = "snap"\n')
    assert load_config(str(path)).agent.snapshot_dir == str(tmp_path / "snap")


def test_format_constraints_checked_at_load() -> None:
    # The rpcx layout names nodes by address and port: it needs a port.
    doc = {
        "zookeeper": {"format": "rpcx"},
        "service": [{"name": "w", "id": "w", "address": "h"}],
    }
    with pytest.raises(ConfigurationError, match=r"service\[0\]"):
        parse_config(doc)


def test_listen_address_in_use_exit_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "agent.toml"
        path.write_text(f'[agent]\nlisten = "127.0.0.1:{port}"\n[log]\nformat = "json"\n')
        env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(
            [sys.executable, "-m", "zkwarden.agent", "-c", str(path)],
            capture_output=True, text=True, timeout=30, env=env,
        )
    assert proc.returncode == 1, proc.stderr
    assert '"event": "start_failed"' in proc.stderr and str(port) in proc.stderr


def test_environment_variables_expand_in_addresses_and_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZKW_TEST_IP", "10.1.1.1")
    monkeypatch.setenv("ZKW_TEST_AUTH", "u:p")
    doc = tomllib.loads(
        '[zookeeper]\nhosts = "${ZKW_TEST_IP}:2181"\n'
        'auth = [{ scheme = "digest", credentials = "${ZKW_TEST_AUTH}" }]\n'
        '[[service]]\nname = "web"\naddress = "${ZKW_TEST_IP}"\nport = 80\n'
        'zone = "$${literal}"\n'
    )
    cfg = parse_config(doc)
    assert cfg.zookeeper.hosts == "10.1.1.1:2181"
    assert cfg.zookeeper.auth == (("digest", "u:p"),)
    (svc,) = cfg.services
    assert (svc.address, svc.id, svc.zone) == ("10.1.1.1", "10.1.1.1:80", "${literal}")
    monkeypatch.delenv("ZKW_TEST_IP")
    with pytest.raises(ConfigurationError, match=r"zookeeper\.hosts: uses \$\{ZKW_TEST_IP\}"):
        parse_config(doc)
