"""Finding the tasks a package left running (shared by the task-ownership tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import ModuleType
from typing import Any


def package_dirs(*packages: ModuleType) -> tuple[str, ...]:
    """The source directories of ``packages`` (for :func:`tasks_running_code_of`)."""
    return tuple(str(Path(str(pkg.__file__)).resolve().parent) for pkg in packages)


def tasks_running_code_of(dirs: tuple[str, ...]) -> list[asyncio.Task[Any]]:
    """Pending tasks (other than the current one) whose coroutine's code lives in ``dirs``."""
    found = []
    for task in asyncio.all_tasks():
        if task.done() or task is asyncio.current_task():
            continue
        code = getattr(task.get_coro(), "cr_code", None)
        if code is not None and str(Path(code.co_filename).resolve()).startswith(dirs):
            found.append(task)
    return found
