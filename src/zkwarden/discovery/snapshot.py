"""A discovery view on disk, for when ZooKeeper cannot be reached.

:func:`write_snapshot` stores ``{service name: [instances]}`` atomically: a temporary file
in the same directory, flushed and fsynced, renamed over the old snapshot with
``os.replace``, then the directory fsynced so the rename itself survives a crash. A reader
therefore sees the old snapshot or the new one, never a torn file.

:func:`read_snapshot` never raises for a missing, unreadable or corrupt file: it logs a
warning and returns ``None``, and callers carry on without the snapshot. Instances use the
Curator JSON encoding (the one instance encoding zkwarden has), so an instance in a
snapshot decodes exactly like one read from ZooKeeper; one undecodable instance is skipped,
not the whole file.

File layout::

    {"format": "zkwarden-discovery-snapshot", "version": 1, "written_at": 1700000000.5,
     "services": {"web": [<Curator instance JSON>, ...], ...}}
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigurationError
from .formats.curator import CuratorFormat
from .instance import ServiceInstance

__all__ = ("Snapshot", "write_snapshot", "read_snapshot", "DEFAULT_FILENAME")

log = logging.getLogger("zkwarden.discovery")

#: The snapshot's file name inside the snapshot directory.
DEFAULT_FILENAME = "discovery-snapshot.json"

_FORMAT = "zkwarden-discovery-snapshot"
_VERSION = 1

# compatible=False: always store "enabled", so the snapshot keeps everything.
_CODEC = CuratorFormat(compatible=False)


class Snapshot(NamedTuple):
    """A view read back from disk and when it was written (seconds since the epoch)."""

    services: dict[str, list[ServiceInstance]]
    written_at: float

    def age(self, now: float | None = None) -> float:
        """Seconds since the snapshot was written (``now`` defaults to ``time.time()``)."""
        return (time.time() if now is None else now) - self.written_at


def _check_filename(filename: str) -> str:
    if not filename or os.sep in filename or (os.altsep and os.altsep in filename):
        raise ConfigurationError(f"snapshot file name must be a plain name: {filename!r}")
    if filename in (".", ".."):
        raise ConfigurationError(f"snapshot file name must be a plain name: {filename!r}")
    return filename


def write_snapshot(
    directory: str | os.PathLike[str],
    view: Mapping[str, Sequence[ServiceInstance]],
    *,
    filename: str = DEFAULT_FILENAME,
    now: float | None = None,
) -> Path:
    """Atomically replace the snapshot in ``directory`` with ``view``; returns its path.

    ``directory`` is created if missing. ``now`` (default ``time.time()``) is stored as the
    time of writing.

    Raises:
        ConfigurationError: ``filename`` is not a plain file name, ``now`` is not finite,
            or ``view`` holds something that is not a ``ServiceInstance``.
        OSError: the directory or file cannot be created or written (the previous snapshot,
            if any, is left as it was).
    """
    _check_filename(filename)
    services: dict[str, list[dict[str, Any]]] = {}
    for name, instances in view.items():
        if not isinstance(name, str):
            raise ConfigurationError(f"service name must be a str, not {name!r}")
        encoded = []
        for instance in instances:
            if not isinstance(instance, ServiceInstance):
                raise ConfigurationError(
                    f"snapshot entries must be ServiceInstance, not {type(instance).__name__}"
                )
            encoded.append(_CODEC.to_json(instance))
        services[name] = encoded
    written_at = time.time() if now is None else float(now)
    if not math.isfinite(written_at):
        raise ConfigurationError(f"snapshot time must be finite, not {now!r}")
    document = {
        "format": _FORMAT,
        "version": _VERSION,
        "written_at": written_at,
        "services": services,
    }
    data = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(data)
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, target)
    except BaseException:
        # Never leave a half-written temporary behind (disk full, interrupted...).
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(folder)
    return target


def _fsync_directory(folder: Path) -> None:
    # Makes the rename durable. Not every platform can open a directory (Windows cannot);
    # there the rename is as durable as the OS makes it.
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_snapshot(
    directory: str | os.PathLike[str], *, filename: str = DEFAULT_FILENAME
) -> Snapshot | None:
    """The snapshot in ``directory``, or ``None`` (with a warning) if there is no usable one.

    Raises:
        ConfigurationError: ``filename`` is not a plain file name.
    """
    _check_filename(filename)
    path = Path(directory) / filename
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        log.warning("no discovery snapshot at %s", path)
        return None
    except OSError as exc:
        log.warning("cannot read discovery snapshot %s: %s", path, exc)
        return None
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        log.warning("discovery snapshot %s is corrupt: %s", path, exc)
        return None
    problem = _check_document(document)
    if problem is not None:
        log.warning("discovery snapshot %s is unusable: %s", path, problem)
        return None

    services: dict[str, list[ServiceInstance]] = {}
    for name, entries in document["services"].items():
        instances: list[ServiceInstance] = []
        for entry in entries:
            node_name = entry.get("id") if isinstance(entry, dict) else None
            instance = _CODEC.from_json(
                name, node_name if isinstance(node_name, str) else "", entry
            )
            if instance is not None:
                instances.append(instance)
        services[name] = instances
    return Snapshot(services, float(document["written_at"]))


def _check_document(document: object) -> str | None:
    """What is wrong with a parsed snapshot, or ``None``."""
    if not isinstance(document, dict):
        return "not a JSON object"
    if document.get("format") != _FORMAT:
        return f"not a zkwarden discovery snapshot (format {document.get('format')!r})"
    if document.get("version") != _VERSION:
        return f"unsupported version {document.get('version')!r}"
    written_at = document.get("written_at")
    if (
        isinstance(written_at, bool)
        or not isinstance(written_at, int | float)
        or not math.isfinite(written_at)
    ):
        return f"bad written_at {written_at!r}"
    services = document.get("services")
    if not isinstance(services, dict):
        return "services is not an object"
    for name, entries in services.items():
        if not isinstance(entries, list):
            return f"instances of {name!r} are not a list"
    return None
