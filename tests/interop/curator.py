"""Drive Apache Curator 5.4 (Debian's ``libcurator-discovery-java``) from Python tests.

:func:`build_tool` compiles ``CuratorTool.java`` (next to this file) with ``javac`` into a
cache directory keyed by the source and class path, once per source change (every pytest
worker and session reuses it), and returns a :class:`CuratorTool` that runs it with
``java -cp …`` as a subprocess. See the comment at the top of ``CuratorTool.java`` for the
commands; this module wraps each one.

Missing Java or Curator jars raise :class:`CuratorNotFoundError` naming what to install.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from zkwarden.errors import ConfigurationError
from zkwarden.testing import HarnessError, find_java

__all__ = (
    "CuratorNotFoundError",
    "CuratorToolError",
    "CuratorTool",
    "RegisteredInstance",
    "CacheWatcher",
    "build_tool",
    "curator_classpath",
)

SOURCE = Path(__file__).with_name("CuratorTool.java")
JAVA_LIBS = Path(os.environ.get("ZKWARDEN_JAVA_LIBS", "/usr/share/java"))

# What curator-x-discovery needs at run time. The Debian jars also name their dependencies
# in their manifests' Class-Path, but listing them makes a missing one fail here, clearly.
_REQUIRED_JARS = (
    "curator-x-discovery",
    "curator-framework",
    "curator-client",
    "zookeeper",
    "zookeeper-jute",
    "jackson-databind",
    "jackson-core",
    "jackson-annotations",
    "guava",
    "slf4j-api",
)
# slf4j-nop keeps Curator and ZooKeeper quiet; failureaccess is split out of newer guavas.
# curator-recipes is needed by ServiceCache (and ServiceProvider) only, and Debian's
# libcurator-discovery-java does not depend on it: `cache` checks for it by itself.
_RECIPES_JAR = "curator-recipes"
_OPTIONAL_JARS = ("slf4j-nop", "failureaccess", _RECIPES_JAR)
_INSTALL_HINT = "install it with `apt-get install libcurator-discovery-java default-jdk-headless`"

# A JVM starts in well under a second; generous for loaded CI machines.
_TIMEOUT = 60.0


class CuratorNotFoundError(ConfigurationError):
    """Java, javac or a Curator jar is missing on this machine."""


class CuratorToolError(HarnessError):
    """CuratorTool failed, or printed something other than what was expected."""


def curator_classpath(libs: Path = JAVA_LIBS) -> list[str]:
    """The jars that run Curator's service discovery, from ``libs``.

    Raises:
        CuratorNotFoundError: a required jar is missing.
    """
    jars: list[str] = []
    missing: list[str] = []
    for name in _REQUIRED_JARS:
        path = libs / f"{name}.jar"
        if path.is_file():
            jars.append(str(path))
        else:
            missing.append(name)
    if missing:
        raise CuratorNotFoundError(
            f"missing Java libraries in {libs}: {', '.join(m + '.jar' for m in missing)}; "
            f"{_INSTALL_HINT} (or point ZKWARDEN_JAVA_LIBS at a directory holding them)"
        )
    jars.extend(str(libs / f"{n}.jar") for n in _OPTIONAL_JARS if (libs / f"{n}.jar").is_file())
    return jars


def _find_javac(java: str) -> str:
    beside = Path(java).resolve().parent / "javac"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("javac")
    if found is None:
        raise CuratorNotFoundError(f"no javac (a JDK, not only a JRE) found; {_INSTALL_HINT}")
    return found


def _java_env() -> dict[str, str]:
    env = dict(os.environ)
    # Command-line arguments reach Java decoded with the locale's charset; make it UTF-8.
    env.setdefault("LC_ALL", "C.UTF-8")
    env.pop("JAVA_TOOL_OPTIONS", None)
    return env


_build_lock = threading.Lock()
_built: dict[str, CuratorTool] = {}


def compile_java(
    java: str, source: Path, classpath: list[str], key: str, cache_dir: Path | None, name: str
) -> Path:
    """Compile ``source`` against ``classpath`` into a cache directory keyed by ``key``
    (once: every pytest worker and session reuses it); return the classes directory.

    Raises:
        CuratorNotFoundError: javac is missing.
        CuratorToolError: javac failed.
    """
    root = cache_dir or Path(tempfile.gettempdir()) / f"zkwarden-{name}-{os.getuid()}"
    classes = root / key
    if (classes / f"{source.stem}.class").is_file():
        return classes
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=root))
    result = subprocess.run(
        [_find_javac(java), "-nowarn", "-Xlint:-options", "-Xlint:-path", "-encoding", "UTF-8",
         "-d", str(building), "-cp", os.pathsep.join(classpath), str(source)],
        capture_output=True,
        env=_java_env(),
        timeout=_TIMEOUT * 2,
    )
    if result.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        raise CuratorToolError(
            f"javac failed on {source.name}:\n" + result.stderr.decode(errors="replace")
        )
    try:
        # Atomic publish; another worker may have won the race, which is fine.
        os.rename(building, classes)
    except OSError:
        shutil.rmtree(building, ignore_errors=True)
    return classes


def build_tool(cache_dir: Path | None = None) -> CuratorTool:
    """Compile ``CuratorTool.java`` (if not cached yet) and return a runner for it.

    Raises:
        CuratorNotFoundError: Java, javac or a Curator jar is missing.
        CuratorToolError: javac failed.
    """
    java = find_java()
    classpath = curator_classpath()
    key = hashlib.sha256(SOURCE.read_bytes() + "\0".join(classpath).encode()).hexdigest()[:16]
    with _build_lock:
        tool = _built.get(key)
        if tool is not None:
            return tool
        classes = compile_java(java, SOURCE, classpath, key, cache_dir, "curator-tool")
        tool = CuratorTool(java, [str(classes), *classpath])
        _built[key] = tool
        return tool


def _option_words(options: Mapping[str, object]) -> list[str]:
    names = {
        "ssl_port": "sslPort",
        "service_type": "serviceType",
        "uri_spec": "uriSpec",
        "registration_time_utc": "registrationTimeUTC",
        "enabled": "enabled",
        "compatible": "compatible",
    }
    words = []
    for key, value in options.items():
        if key not in names:
            raise ConfigurationError(f"unknown CuratorTool option {key!r}")
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        words.append(f"{names[key]}={text}")
    return words


class CuratorTool:
    """Runs the compiled ``CuratorTool`` (see ``CuratorTool.java``)."""

    def __init__(self, java: str, classpath: list[str]) -> None:
        self.java = java
        self.classpath = classpath

    def command(self, *args: str) -> list[str]:
        """The full ``java`` command line for ``CuratorTool args…``."""
        return [
            self.java,
            "-Xshare:auto",
            "-XX:TieredStopAtLevel=1",
            "-Xmx256m",
            "-cp",
            os.pathsep.join(self.classpath),
            "CuratorTool",
            *args,
        ]

    def run(self, *args: str, stdin: bytes = b"", timeout: float = _TIMEOUT) -> bytes:
        """Run one command to completion and return its stdout.

        Raises:
            CuratorToolError: it exited non-zero or did not finish within ``timeout``.
        """
        try:
            result = subprocess.run(
                self.command(*args),
                input=stdin,
                capture_output=True,
                env=_java_env(),
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise CuratorToolError(f"CuratorTool {args[0]} timed out after {timeout}s") from exc
        if result.returncode != 0:
            raise CuratorToolError(
                f"CuratorTool {' '.join(args[:1])} exited {result.returncode}: "
                f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
            )
        return result.stdout

    # --- offline ------------------------------------------------------------------------

    def serialize(self, spec: Mapping[str, Any]) -> bytes:
        """The bytes Curator's ``JsonInstanceSerializer`` writes for the instance ``spec``.

        ``spec`` keys: name, id, address, port, sslPort, payload, registrationTimeUTC,
        serviceType, uriSpec (template string), enabled, compatible.

        Raises:
            CuratorToolError: Curator rejected the spec.
        """
        return self.run("serialize", stdin=json.dumps(spec).encode("utf-8"))

    def deserialize(self, data: bytes, payload_class: str = "java.util.Map") -> dict[str, Any]:
        """What Curator's reader (built with ``payload_class``) makes of ``data``.

        The result has the instance's fields as Curator sees them, plus ``payloadClass``
        and ``uri`` (``buildUriSpec()``).

        Raises:
            CuratorToolError: Curator could not read ``data`` (the message is Curator's).
        """
        out = self.run("deserialize", payload_class, stdin=data).decode("utf-8")
        return dict(json.loads(out))

    def try_deserialize(self, data: bytes, payload_class: str = "java.util.Map") -> str | None:
        """``None`` if Curator reads ``data``, else Curator's error. Never raises."""
        try:
            self.deserialize(data, payload_class)
        except CuratorToolError as exc:
            return str(exc)
        return None

    # --- against a server ---------------------------------------------------------------

    def query(self, connect: str, base: str, name: str) -> list[dict[str, Any]]:
        """``queryForInstances(name)``, one dict per instance (see :meth:`deserialize`).

        Raises:
            CuratorToolError: the tool failed (no server, …).
        """
        lines = self.run("query", connect, base, name).decode("utf-8").splitlines()
        if not lines or lines[-1] != "END":
            raise CuratorToolError(f"query output did not end with END: {lines!r}")
        return [dict(json.loads(line)) for line in lines[:-1]]

    def names(self, connect: str, base: str) -> list[str]:
        """``queryForNames()``.

        Raises:
            CuratorToolError: the tool failed.
        """
        return list(json.loads(self.run("names", connect, base).decode("utf-8")))

    def get(self, connect: str, path: str) -> bytes | None:
        """The raw bytes of znode ``path``, or ``None`` if it does not exist.

        Raises:
            CuratorToolError: the tool failed.
        """
        return _data_line(self.run("get", connect, path).decode("utf-8").strip())

    def register(
        self,
        connect: str,
        base: str,
        name: str,
        instance_id: str,
        address: str,
        port: int | None,
        payload: Mapping[str, Any] | None,
        **options: object,
    ) -> RegisteredInstance:
        """Register through Curator's ``ServiceDiscovery``; the registration lives until
        the returned object is closed.

        ``options``: ssl_port, service_type, uri_spec, registration_time_utc, enabled,
        compatible.

        Raises:
            CuratorToolError: the registration did not happen.
        """
        args = [
            "register",
            connect,
            base,
            name,
            instance_id,
            address,
            "-" if port is None else str(port),
            json.dumps(payload),
            *_option_words(options),
        ]
        process = RegisteredInstance(self.command(*args))
        try:
            line = process.expect("REGISTERED ")
        except BaseException:
            process.close()
            raise
        process.path = line.split(" ", 1)[1]
        return process

    def cache(self, connect: str, base: str, name: str) -> CacheWatcher:
        """Start a Curator ``ServiceCache`` for ``name``; close the result to stop it.

        Raises:
            CuratorNotFoundError: curator-recipes.jar (which ServiceCache needs) is missing.
            CuratorToolError: the cache did not start.
        """
        if not any(Path(jar).name == f"{_RECIPES_JAR}.jar" for jar in self.classpath):
            raise CuratorNotFoundError(
                f"Curator's ServiceCache needs {_RECIPES_JAR}.jar, which Debian's "
                "libcurator-discovery-java does not pull in; install it with "
                "`apt-get install libcurator-recipes-java`"
            )
        process = CacheWatcher(self.command("cache", connect, base, name))
        try:
            process.expect("READY")
            process.last = process.next_list()
        except BaseException:
            process.close()
            raise
        return process


def _data_line(line: str) -> bytes | None:
    if line == "NONODE":
        return None
    if not line.startswith("DATA "):
        raise CuratorToolError(f"expected DATA or NONODE, got {line!r}")
    return base64.b64decode(line[len("DATA ") :])


_EOF = object()


class _LineProcess:
    """A long-running CuratorTool: commands on stdin, lines from stdout via a queue."""

    def __init__(self, command: list[str]) -> None:
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_java_env(),
        )
        self._lines: queue.Queue[object] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            self._lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(_EOF)

    def next_line(self, timeout: float = _TIMEOUT) -> str:
        """The next line printed.

        Raises:
            CuratorToolError: nothing within ``timeout``, the process ended, or it printed
                an ERROR line.
        """
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise CuratorToolError(f"CuratorTool printed nothing for {timeout}s") from None
        if line is _EOF:
            self._lines.put(_EOF)
            stderr = b""
            if self._process.stderr is not None:
                self._process.wait(timeout=_TIMEOUT)
                stderr = self._process.stderr.read()
            raise CuratorToolError(
                f"CuratorTool exited ({self._process.returncode}): "
                f"{stderr.decode(errors='replace')}"
            )
        assert isinstance(line, str)
        if line.startswith("ERROR"):
            raise CuratorToolError(f"CuratorTool: {line}")
        return line

    def expect(self, prefix: str, timeout: float = _TIMEOUT) -> str:
        """Skip lines until one starts with ``prefix`` and return it.

        Raises:
            CuratorToolError: see :meth:`next_line`.
        """
        while True:
            line = self.next_line(timeout)
            if line.startswith(prefix):
                return line

    def send(self, command: str) -> None:
        """Write one command line to the tool's stdin."""
        assert self._process.stdin is not None
        self._process.stdin.write(command.encode("utf-8") + b"\n")
        self._process.stdin.flush()

    def close(self, timeout: float = 20.0) -> None:
        """Close stdin (the tool then exits and its session closes); kill if it hangs."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            try:
                self._process.stdin.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> _LineProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RegisteredInstance(_LineProcess):
    """An instance registered by Curator in a live JVM; close it to end the session."""

    path: str = ""

    def __enter__(self) -> RegisteredInstance:
        return self

    def update(self, payload: Mapping[str, Any] | None) -> None:
        """``updateService`` with a new payload.

        Raises:
            CuratorToolError: the update failed.
        """
        self.send("update " + json.dumps(payload))
        self.expect("UPDATED")

    def unregister(self) -> None:
        """``unregisterService``.

        Raises:
            CuratorToolError: the unregistration failed.
        """
        self.send("unregister")
        self.expect("UNREGISTERED")

    def data(self) -> bytes | None:
        """The instance node's bytes as Curator reads them back (``None`` if gone).

        Raises:
            CuratorToolError: the read failed.
        """
        self.send("get")
        line = self.next_line()
        while not (line.startswith("DATA ") or line == "NONODE"):
            line = self.next_line()
        return _data_line(line)


class CacheWatcher(_LineProcess):
    """A Curator ``ServiceCache`` in a live JVM, reporting each ``cacheChanged``."""

    last: list[dict[str, Any]] = []

    def __enter__(self) -> CacheWatcher:
        return self

    def next_list(self, timeout: float = _TIMEOUT) -> list[dict[str, Any]]:
        """The instance list printed next (after the following ``cacheChanged``).

        Raises:
            CuratorToolError: none within ``timeout``.
        """
        while True:
            line = self.next_line(timeout)
            if line.startswith("["):
                self.last = [dict(item) for item in json.loads(line)]
                return self.last

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = _TIMEOUT
    ) -> list[dict[str, Any]]:
        """Read lists until ``predicate`` holds for one (the current one counts).

        Raises:
            CuratorToolError: no such list within ``timeout`` per change.
        """
        current = self.last
        while not predicate(current):
            current = self.next_list(timeout)
        return current
