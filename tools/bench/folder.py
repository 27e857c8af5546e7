"""A report folder written atomically: built under a temp name beside ``out``, renamed into place at the end."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tools.errors import ToolsError


def temp_dir_for(out: Path, force: bool) -> Path:
    """A private temp folder beside ``out``, after checking that ``out`` can be created there."""
    if out.exists() and not out.is_dir():
        raise ToolsError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ToolsError(f"--out {out}: folder exists and is not empty (pass --force to replace it)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise ToolsError(f"--out {out}: cannot write there ({e.strerror or e})") from e
