"""Health checks: HTTP GET, TCP connect, command exit code; and the rise/fall rule.

No check blocks the event loop: HTTP goes through aiohttp, TCP through
``asyncio.open_connection`` and commands through ``asyncio.create_subprocess_exec`` in
their own process group, killed (group and all) when they overrun their timeout. A check
never raises: every outcome, a timeout or a crash included, is a :class:`CheckResult`.

:class:`HealthState` is the pure rise/fall state machine: an instance becomes *passing*
after ``rise`` consecutive successes and *failing* after ``fall`` consecutive failures;
it starts *unknown* (not registered).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import time
from dataclasses import dataclass
from typing import Literal

import aiohttp

from .config import CheckConfig

__all__ = ("CheckResult", "Check", "HealthState", "Status", "make_check")

Status = Literal["unknown", "passing", "failing"]

_OUTPUT_LIMIT = 512


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One run of a check: did it pass, what it said, how long it took (seconds)."""

    ok: bool
    output: str
    duration: float


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _OUTPUT_LIMIT else "..." + text[-_OUTPUT_LIMIT:]


class Check:
    """A health check; :meth:`run` never raises (except ``CancelledError``)."""

    def __init__(self, config: CheckConfig) -> None:
        self.config = config

    async def run(self) -> CheckResult:
        """Run the check once, bounded by its timeout."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.timeout):
                ok, output = await self._probe()
        except TimeoutError:
            ok, output = False, f"timed out after {self.config.timeout:g}s"
        except OSError as exc:
            ok, output = False, exc.strerror or str(exc) or type(exc).__name__
        except aiohttp.ClientError as exc:
            ok, output = False, str(exc) or type(exc).__name__
        except Exception as exc:  # a check must never take the agent down
            ok, output = False, f"{type(exc).__name__}: {exc}"
        return CheckResult(ok, _clip(output), time.monotonic() - started)

    async def _probe(self) -> tuple[bool, str]:
        return True, "no check"

    async def close(self) -> None:
        """Release what the check holds (nothing by default)."""


class HTTPCheck(Check):
    """``GET url`` answering 2xx passes (redirects are not followed: 3xx fails)."""

    def __init__(self, config: CheckConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(config)
        self._session = session
        self._ssl: ssl.SSLContext | bool = True
        if config.tls_skip_verify:
            self._ssl = False

    async def _probe(self) -> tuple[bool, str]:
        assert self.config.url is not None
        async with self._session.get(
            self.config.url,
            headers=dict(self.config.headers),
            allow_redirects=False,
            ssl=self._ssl,
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
        ) as response:
            body = await response.content.read(_OUTPUT_LIMIT)
            text = body.decode("utf-8", "replace")
            status = f"HTTP {response.status}"
            return 200 <= response.status < 300, f"{status}: {text}" if text else status


class TCPCheck(Check):
    """Connecting to ``host:port`` passes."""

    async def _probe(self) -> tuple[bool, str]:
        assert self.config.host is not None and self.config.port is not None
        _, writer = await asyncio.open_connection(self.config.host, self.config.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True, f"connected to {self.config.host}:{self.config.port}"


class CommandCheck(Check):
    """The command exiting 0 passes; it is killed (with its process group) on timeout."""

    async def _probe(self) -> tuple[bool, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.config.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            return False, f"command not found: {self.config.command[0]}"
        except PermissionError:
            return False, f"command not executable: {self.config.command[0]}"
        try:
            output = await self._drain(proc)
            code = await proc.wait()
        except BaseException:
            # Timeout or cancellation: no orphan may outlive the check.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                proc.kill()
            await asyncio.shield(proc.wait())
            raise
        text = output.decode("utf-8", "replace")
        summary = f"exit code {code}"
        return code == 0, f"{summary}: {text}" if text.strip() else summary

    @staticmethod
    async def _drain(proc: asyncio.subprocess.Process) -> bytes:
        # Keep only the tail, so a chatty check costs bounded memory and never blocks on
        # a full pipe.
        assert proc.stdout is not None
        tail = bytearray()
        while chunk := await proc.stdout.read(65536):
            tail += chunk
            del tail[: -4 * _OUTPUT_LIMIT]
        return bytes(tail)


def make_check(config: CheckConfig, session: aiohttp.ClientSession) -> Check:
    """The check ``config`` describes; ``session`` is shared by every HTTP check."""
    if config.type == "http":
        return HTTPCheck(config, session)
    if config.type == "tcp":
        return TCPCheck(config)
    if config.type == "command":
        return CommandCheck(config)
    return Check(config)


class HealthState:
    """Consecutive results → status, with ``rise``/``fall`` hysteresis.

    ``status`` starts ``unknown`` (or as given, to carry a status over a check change).
    """

    def __init__(self, rise: int, fall: int, status: Status = "unknown") -> None:
        self.rise = rise
        self.fall = fall
        self.status: Status = status
        self.successes = 0
        self.failures = 0
        self.last: CheckResult | None = None
        self.last_checked: float | None = None
        self.changed_at: float | None = None

    def record(self, result: CheckResult, now: float | None = None) -> bool:
        """Count ``result``; True when it changed the status."""
        self.last = result
        self.last_checked = time.time() if now is None else now
        if result.ok:
            self.successes += 1
            self.failures = 0
            target: Status | None = "passing" if self.successes >= self.rise else None
        else:
            self.failures += 1
            self.successes = 0
            target = "failing" if self.failures >= self.fall else None
        if target is None or target == self.status:
            return False
        self.status = target
        self.changed_at = self.last_checked
        return True
