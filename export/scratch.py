"""Temporary folders that a killed run does not leave behind for good.

Each is named ``<prefix><pid>-<random>``; before making one, the folders of the same prefix whose
process is gone (killed: SIGKILL gives no chance to clean up) are removed. A live process's
folders are never touched, so concurrent runs are safe.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove the folders ``parent/<prefix><pid>-*`` whose process no longer runs; returns them."""
    removed: list[Path] = []
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def scratch_dir(parent: Path, prefix: str) -> Path:
    """A new folder ``parent/<prefix><pid>-<random>`` (mode 0700), after removing dead runs' ones."""
    remove_stale(parent, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


@contextlib.contextmanager
def scratch_in(parent: Path, prefix: str) -> Iterator[Path]:
    """:func:`scratch_dir` as a context manager: removed on exit, and by the next run if this one is killed."""
    d = scratch_dir(parent, prefix)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A scratch folder in the system's temporary directory, removed on exit (and by the next run if killed)."""
    with scratch_in(Path(tempfile.gettempdir()), prefix) as d:
        yield d


def discard(folder: Path) -> None:
    """Move a cached folder out of its name at once (so nothing runs it again), then delete it.

    Another process discarding the same folder at the same moment is fine: one rename wins.
    """
    stale = Path(tempfile.mkdtemp(prefix=f".{folder.name}.stale-{os.getpid()}-", dir=folder.parent))
    try:
        folder.rename(stale / folder.name)
    except OSError:
        pass  # gone already
    shutil.rmtree(stale, ignore_errors=True)
