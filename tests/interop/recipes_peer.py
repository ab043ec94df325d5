"""Drive Apache Curator 5.4's recipes (Debian's ``libcurator-recipes-java``) from Python tests.

:func:`build_recipe_tool` compiles ``RecipeTool.java`` (next to this file) with ``javac`` into
a cache directory keyed by the source and class path, once per source change, exactly as
:func:`curator.build_tool` does for the discovery peer, and returns a :class:`RecipeTool`.
Each Curator participant is a JVM (:class:`RecipePeer`) that prints one JSON object per line
(``{"t": <CLOCK_MONOTONIC seconds>, "event": ...}``, the clock of :func:`time.monotonic`)
and takes commands on stdin. See the comment at the top of ``RecipeTool.java``.

Missing Java or Curator jars raise :class:`CuratorNotFoundError` naming what to install.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from zkwarden.testing import find_java

from .curator import (
    JAVA_LIBS,
    CuratorNotFoundError,
    CuratorToolError,
    _LineProcess,
    compile_java,
    curator_classpath,
)

__all__ = ("RecipeTool", "RecipePeer", "build_recipe_tool", "Event")

SOURCE = Path(__file__).with_name("RecipeTool.java")
_RECIPES_JAR = "curator-recipes"
_TIMEOUT = 60.0

Event = dict[str, Any]


def _recipe_classpath() -> list[str]:
    classpath = curator_classpath()
    if not any(Path(jar).name == f"{_RECIPES_JAR}.jar" for jar in classpath):
        raise CuratorNotFoundError(
            f"missing {_RECIPES_JAR}.jar in {JAVA_LIBS}; install it with "
            "`apt-get install libcurator-recipes-java` (make test does)"
        )
    return classpath


_build_lock = threading.Lock()
_built: dict[str, RecipeTool] = {}


def build_recipe_tool(cache_dir: Path | None = None) -> RecipeTool:
    """Compile ``RecipeTool.java`` (if not cached yet) and return a runner for it.

    Raises:
        CuratorNotFoundError: Java, javac or a Curator jar is missing.
        CuratorToolError: javac failed.
    """
    java = find_java()
    classpath = _recipe_classpath()
    key = hashlib.sha256(SOURCE.read_bytes() + "\0".join(classpath).encode()).hexdigest()[:16]
    with _build_lock:
        tool = _built.get(key)
        if tool is not None:
            return tool
        classes = compile_java(java, SOURCE, classpath, key, cache_dir, "recipe-tool")
        tool = RecipeTool(java, [str(classes), *classpath])
        _built[key] = tool
        return tool


def _words(options: dict[str, object]) -> list[str]:
    words: list[str] = []
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        words.extend([flag] if value is True else [flag, str(value)])
    return words


class RecipePeer(_LineProcess):
    """One Curator participant in its own JVM; every event it printed is kept in
    :attr:`events` (in order)."""

    def __init__(self, command: list[str], name: str) -> None:
        super().__init__(command)
        self.name = name
        self.events: list[Event] = []

    def __enter__(self) -> RecipePeer:
        return self

    def next_event(self, timeout: float = _TIMEOUT) -> Event:
        """The next event printed.

        Raises:
            CuratorToolError: nothing within ``timeout``, the process ended, it printed
                something that is not JSON, or an ``error`` event.
        """
        return self._parse(self.next_line(timeout))

    def _parse(self, line: str) -> Event:
        try:
            event = json.loads(line)
        except ValueError:
            raise CuratorToolError(f"{self.name}: not a JSON line: {line!r}") from None
        if not isinstance(event, dict):
            raise CuratorToolError(f"{self.name}: not a JSON object: {line!r}")
        self.events.append(event)
        if event.get("event") == "error":
            raise CuratorToolError(f"{self.name}: {event.get('message')}")
        return event

    def expect_event(
        self,
        name: str,
        timeout: float = _TIMEOUT,
        where: Callable[[Event], bool] | None = None,
    ) -> Event:
        """Read events until one named ``name`` (and matching ``where``) and return it.

        Raises:
            CuratorToolError: see :meth:`next_event`.
        """
        while True:
            event = self.next_event(timeout)
            if event["event"] == name and (where is None or where(event)):
                return event

    def drain(self, quiet: float) -> list[Event]:
        """Every event printed until none came for ``quiet`` seconds (all kept in
        :attr:`events` too); nothing at all is fine.

        Raises:
            CuratorToolError: see :meth:`next_event` (not for the quiet period).
        """
        seen: list[Event] = []
        while True:
            try:
                line = self._lines.get(timeout=quiet)
            except queue.Empty:
                return seen
            if not isinstance(line, str):  # the end of output: next_line reports it
                self._lines.put(line)
                self.next_line()
            seen.append(self._parse(str(line)))

    def go(self) -> None:
        """Start the rounds of a peer started with ``wait_go``."""
        self.send("go")

    def request(self, command: str, reply: str, timeout: float = _TIMEOUT) -> Event:
        """Send ``command`` and return the ``reply`` event that answers it.

        Raises:
            CuratorToolError: see :meth:`next_event`.
        """
        self.send(command)
        return self.expect_event(reply, timeout)

    def until_done(self, timeout: float = _TIMEOUT) -> Event:
        """Read events until ``done`` and return it (the rounds are all in :attr:`events`).

        Raises:
            CuratorToolError: see :meth:`next_event` (``timeout`` bounds each event).
        """
        return self.expect_event("done", timeout)

    def named(self, *names: str) -> list[Event]:
        """The events seen so far whose name is one of ``names``."""
        return [e for e in self.events if e["event"] in names]


class RecipeTool:
    """Runs the compiled ``RecipeTool`` (see ``RecipeTool.java``)."""

    def __init__(self, java: str, classpath: list[str]) -> None:
        self.java = java
        self.classpath = classpath

    def command(self, *args: str) -> list[str]:
        """The full ``java`` command line for ``RecipeTool args…``."""
        return [
            self.java,
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-Xmx128m",
            "-cp",
            os.pathsep.join(self.classpath),
            "RecipeTool",
            *args,
        ]

    def start(self, recipe: str, connect: str, path: str, *, name: str = "", **options: object) -> RecipePeer:
        """Start ``RecipeTool recipe connect path --option value…`` and wait for ``ready``.

        Options with ``True`` become bare flags (``wait_go=True`` -> ``--wait-go``); ``None``
        and ``False`` are left out.

        Raises:
            CuratorToolError: it failed before ``ready``.
        """
        args = [recipe, connect, path, *_words(options)]
        peer = RecipePeer(self.command(*args), name or f"java-{recipe}-{options.get('id', '')}")
        try:
            peer.expect_event("ready")
        except BaseException:
            peer.close()
            raise
        return peer

    def start_many(
        self, recipe: str, connect: str, path: str, ids: Iterable[str], **options: object
    ) -> list[RecipePeer]:
        """Start one peer per id, all at once (the JVMs start in parallel), and wait until
        every one is ``ready``.

        Raises:
            CuratorToolError: one failed before ``ready`` (all are closed then).
        """
        peers: list[RecipePeer] = []
        try:
            for ident in ids:
                args = [recipe, connect, path, *_words({"id": ident, **options})]
                peers.append(RecipePeer(self.command(*args), f"java-{recipe}-{ident}"))
            for peer in peers:
                peer.expect_event("ready")
        except BaseException:
            for peer in peers:
                peer.close()
            raise
        return peers

    def participants(self, connect: str, path: str, kind: str = "latch") -> list[Event]:
        """Curator's ``getParticipants()`` for a latch or a selector path, as
        ``[{"id": ..., "leader": ...}]`` in Curator's order.

        Raises:
            CuratorToolError: the tool failed.
        """
        peer = RecipePeer(self.command("participants", connect, path, "--kind", kind), "java-participants")
        try:
            event = peer.expect_event("participants")
        finally:
            peer.close()
        return list(event["participants"])
