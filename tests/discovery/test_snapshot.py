"""The discovery snapshot: atomic write, faithful read-back, never a crash on bad files."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zkwarden.discovery import ServiceInstance, Snapshot, read_snapshot, write_snapshot
from zkwarden.discovery.snapshot import DEFAULT_FILENAME
from zkwarden.errors import ConfigurationError

from .strategies_hypothesis import instances, znode_text

VIEW = {
    "web": [
        ServiceInstance(
            "web",
            id="w1",
            address="10.0.0.1",
            port=80,
            payload={"a": [1, {"b": None}]},
            weight=3,
            zone="z",
            tags=("t",),
            metadata={"k": "v"},
            enabled=False,
            registration_time=1.5,
        ),
        ServiceInstance("web", id="w2", address="10.0.0.2", port=81, registration_time=2),
    ],
    "empty": [],
}


def test_write_then_read(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path / "snap", VIEW, now=1234.5)
    assert path == tmp_path / "snap" / DEFAULT_FILENAME
    snap = read_snapshot(tmp_path / "snap")
    assert snap == Snapshot(VIEW, 1234.5)
    services, written_at = snap  # a (view, time) pair
    assert written_at == 1234.5 and services == VIEW
    assert snap.age(now=1240.0) == 5.5
    # Instances are stored in the Curator JSON encoding.
    document = json.loads(path.read_bytes())
    assert document["services"]["web"][0]["payload"]["zkwarden"]["weight"] == 3
    assert document["services"]["web"][0]["enabled"] is False


def test_overwrite_leaves_no_temporaries(tmp_path: Path) -> None:
    write_snapshot(tmp_path, VIEW)
    write_snapshot(tmp_path, {"web": VIEW["web"][:1]}, filename="other.json")
    write_snapshot(tmp_path, {"web": []})
    assert sorted(p.name for p in tmp_path.iterdir()) == [DEFAULT_FILENAME, "other.json"]
    snap = read_snapshot(tmp_path)
    assert snap is not None and snap.services == {"web": []}


def test_failed_write_keeps_the_old_snapshot(tmp_path: Path) -> None:
    write_snapshot(tmp_path, VIEW, now=1.0)
    with mock.patch("zkwarden.discovery.snapshot.os.replace", side_effect=OSError("disk full")):
        with pytest.raises(OSError, match="disk full"):
            write_snapshot(tmp_path, {"web": []}, now=2.0)
    assert [p.name for p in tmp_path.iterdir()] == [DEFAULT_FILENAME]
    assert read_snapshot(tmp_path) == Snapshot(VIEW, 1.0)


def test_fsyncs_file_and_directory(tmp_path: Path) -> None:
    with mock.patch("zkwarden.discovery.snapshot.os.fsync", wraps=os.fsync) as fsync:
        write_snapshot(tmp_path, VIEW)
    assert fsync.call_count == 2


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00\x01garbage",
        b'{"format":"zkwarden-discovery-snapshot","version":1,"written_at":1,"services":{"web":[',
        b"[]",
        b'{"format":"something-else","version":1,"written_at":1,"services":{}}',
        b'{"format":"zkwarden-discovery-snapshot","version":99,"written_at":1,"services":{}}',
        b'{"format":"zkwarden-discovery-snapshot","version":1,"written_at":"x","services":{}}',
        b'{"format":"zkwarden-discovery-snapshot","version":1,"written_at":1,"services":[]}',
        b'{"format":"zkwarden-discovery-snapshot","version":1,"written_at":1,"services":{"a":1}}',
        b"[" * 100000,
    ],
)
def test_corrupt_files_give_none_and_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / DEFAULT_FILENAME).write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="zkwarden.discovery"):
        assert read_snapshot(tmp_path) is None
    assert caplog.records


def test_missing_file_and_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="zkwarden.discovery"):
        assert read_snapshot(tmp_path) is None
        assert read_snapshot(tmp_path / "no" / "such" / "dir") is None
        # A directory where the file should be: unreadable, still no crash.
        (tmp_path / "d" / DEFAULT_FILENAME).mkdir(parents=True)
        assert read_snapshot(tmp_path / "d") is None
    assert len(caplog.records) == 3


def test_one_bad_instance_is_skipped_not_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_snapshot(tmp_path, VIEW, now=5.0)
    document = json.loads(path.read_bytes())
    document["services"]["web"].append({"id": "bad/id", "name": "web"})
    document["services"]["web"].append("not an object")
    path.write_text(json.dumps(document))
    with caplog.at_level(logging.WARNING, logger="zkwarden.discovery"):
        snap = read_snapshot(tmp_path)
    assert snap == Snapshot(VIEW, 5.0)
    assert len(caplog.records) == 2


def test_bad_arguments(tmp_path: Path) -> None:
    for filename in ("", "a/b", "..", "."):
        with pytest.raises(ConfigurationError):
            write_snapshot(tmp_path, VIEW, filename=filename)
        with pytest.raises(ConfigurationError):
            read_snapshot(tmp_path, filename=filename)
    with pytest.raises(ConfigurationError):
        write_snapshot(tmp_path, {"web": ["not an instance"]})  # type: ignore[list-item]
    with pytest.raises(ConfigurationError):
        write_snapshot(tmp_path, VIEW, now=float("nan"))


@settings(
    deadline=None, max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(view=st.dictionaries(znode_text, st.lists(instances(), max_size=3), max_size=3))
def test_round_trip_any_view(tmp_path: Path, view: dict[str, list[ServiceInstance]]) -> None:
    write_snapshot(tmp_path, view, now=42.0)
    assert read_snapshot(tmp_path) == Snapshot(view, 42.0)
