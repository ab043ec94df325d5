"""A TreeCache view on disk, for when ZooKeeper cannot be reached.

Written atomically (a temporary file in the same directory, fsynced, renamed over the old
one with ``os.replace``, then the directory fsynced), so a reader sees the old snapshot
or the new one, never a torn file. Reading never raises for a missing, unreadable or
corrupt file: it logs a warning and returns None, and the cache starts empty.

Layout::

    {"format": "zkwarden-tree-snapshot", "version": 1, "root": "/config",
     "written_at": 1700000000.5,
     "nodes": {"/config": ["<base64 data>", [czxid, mzxid, ctime, mtime, version,
                                              cversion, aversion, ephemeral_owner,
                                              data_length, num_children, pzxid]], ...}}
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from ..errors import ConfigurationError
from ..types import Stat

__all__ = ("TreeSnapshot", "write_tree_snapshot", "read_tree_snapshot", "snapshot_filename")

log = logging.getLogger("zkwarden.caches")

_FORMAT = "zkwarden-tree-snapshot"
_VERSION = 1
_STAT_FIELDS = tuple(f.name for f in dataclasses.fields(Stat))


class TreeSnapshot(NamedTuple):
    """A view read back from disk and when it was written (seconds since the epoch)."""

    nodes: dict[str, tuple[bytes, Stat]]
    written_at: float


def snapshot_filename(root: str) -> str:
    """The file name of the snapshot of the tree at ``root`` (a plain, safe name)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in root.strip("/"))
    digest = 0
    for byte in root.encode("utf-8"):  # FNV-1a: two roots that sanitize alike still differ
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"tree-{safe[:80] or '_root'}-{digest:016x}.json"


def write_tree_snapshot(
    directory: str | os.PathLike[str], root: str, nodes: Mapping[str, tuple[bytes, Stat]]
) -> Path:
    """Atomically replace the snapshot of ``root`` in ``directory``; returns its path.

    Raises:
        OSError: the directory or file cannot be created or written (the previous
            snapshot, if any, is left as it was).
    """
    document = {
        "format": _FORMAT,
        "version": _VERSION,
        "root": root,
        "written_at": time.time(),
        "nodes": {
            path: [base64.b64encode(data).decode("ascii"), list(dataclasses.astuple(stat))]
            for path, (data, stat) in nodes.items()
        },
    }
    payload = json.dumps(document, separators=(",", ":")).encode("utf-8")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    name = snapshot_filename(root)
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(payload)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, folder / name)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename durable where a directory can be opened
        dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return folder / name
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return folder / name


def read_tree_snapshot(directory: str | os.PathLike[str], root: str) -> TreeSnapshot | None:
    """The snapshot of ``root`` in ``directory``, or None (with a warning) if unusable.

    Never raises.
    """
    path = Path(directory) / snapshot_filename(root)
    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        log.warning("no tree snapshot at %s", path)
        return None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        log.warning("tree snapshot %s is unreadable or corrupt: %s", path, exc)
        return None
    try:
        return _parse(document, root)
    except (ConfigurationError, TypeError, ValueError, binascii.Error) as exc:
        log.warning("tree snapshot %s is unusable: %s", path, exc)
        return None


def _parse(document: object, root: str) -> TreeSnapshot:
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ConfigurationError("not a zkwarden tree snapshot")
    if document.get("version") != _VERSION or document.get("root") != root:
        raise ConfigurationError("another version, or the snapshot of another root")
    written_at = document.get("written_at")
    if (isinstance(written_at, bool) or not isinstance(written_at, int | float)
            or not math.isfinite(written_at)):
        raise ConfigurationError(f"bad written_at {written_at!r}")
    raw = document.get("nodes")
    if not isinstance(raw, dict):
        raise ConfigurationError("nodes is not an object")
    nodes: dict[str, tuple[bytes, Stat]] = {}
    prefix = root.rstrip("/") + "/"
    for path, entry in raw.items():
        if path != root and not path.startswith(prefix):
            raise ConfigurationError(f"{path!r} is not under {root!r}")
        data_b64, fields = entry
        if (not isinstance(fields, list) or len(fields) != len(_STAT_FIELDS)
                or not all(type(v) is int for v in fields)):
            raise ConfigurationError(f"bad stat for {path!r}")
        nodes[path] = (base64.b64decode(data_b64, validate=True), Stat(*fields))
    return TreeSnapshot(nodes, float(written_at))
