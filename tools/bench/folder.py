"""A report folder written atomically: built under a temp name beside ``out``, renamed into place at the end.

Temp folders are named ``.<out>.tmp-<pid>-<random>``: a run killed before it could clean up (SIGKILL,
power loss) leaves one behind, and the next run beside the same ``out`` removes every such folder
whose process no longer runs. A live run's folder is never touched, so concurrent runs are safe.
(export's scratch folders: export/scratch.py.)
"""

from __future__ import annotations

from pathlib import Path

from export import scratch_dir
from tools.errors import ToolsError


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
