"""A report folder written atomically: built under a temp name beside ``out``, renamed into place at the end.

Temp folders are named ``.<out>.tmp-<pid>-<random>``: a run killed before it could clean up (SIGKILL,
power loss) leaves one behind, and the next run beside the same ``out`` removes every such folder
whose process no longer runs. A live run's folder is never touched, so concurrent runs are safe.
(The same pattern as export's own scratch folders; export/scratch.py.)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tools.errors import ToolsError


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (someone else's counts: it cannot be signalled, but it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(parent: Path, prefix: str) -> list[Path]:
    """Remove the folders ``parent/<prefix><pid>-*`` whose process no longer runs; returns them."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    removed: list[Path] = []
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
    """A new private folder ``parent/<prefix><pid>-<random>``, after removing the ones of runs that died."""
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


def temp_dir_for(out: Path, force: bool) -> Path:
    """A private temp folder beside ``out``, after checking that ``out`` can be created there."""
    if out.exists() and not out.is_dir():
        raise ToolsError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ToolsError(f"--out {out}: folder exists and is not empty (pass --force to replace it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return scratch_dir(out.parent, f".{out.name}.tmp-")
    except OSError as e:
        raise ToolsError(f"--out {out}: cannot write there ({e.strerror or e})") from e
