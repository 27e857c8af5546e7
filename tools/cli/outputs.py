"""Output locations checked before any work starts: a bad --out is refused in one line, not after the search.

:func:`check_output` looks at where a file or folder will be written (the target itself and the
nearest folder that exists above it) and raises :class:`tools.errors.ToolsError` naming the flag,
the path and the problem. Writing itself stays atomic where it happens (temp file or folder, then rename).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tools.errors import ToolsError


def _nearest_existing(path: Path) -> Path:
    """The path itself or its closest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or ".")


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried, not guessed from mode bits: root ignores them)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".pae-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def check_output(path: Path, flag: str, *, folder: bool = False, force: bool = False) -> Path:
    """``path`` as an output of ``flag``: a file (replaced if present) or, with ``folder``, a folder (absent,
    empty, or replaced with ``force``); its missing parents may be created. Returns ``path``."""
    path = Path(path)
    where = f"{flag} {path}"
    if path.exists():
        if folder and not path.is_dir():
            raise ToolsError(f"{where}: exists and is not a folder")
        if folder and any(path.iterdir()) and not force:
            raise ToolsError(f"{where}: folder exists and is not empty (pass --force to replace it)")
        if not folder and path.is_dir():
            raise ToolsError(f"{where}: is a directory, expected a file path")
    parent = _nearest_existing(path.parent)
    if not parent.is_dir():
        raise ToolsError(f"{where}: cannot write there: {parent} is a file, not a folder")
    if not _writable(parent):
        raise ToolsError(f"{where}: cannot write there: folder {parent} is not writable")
    return path
