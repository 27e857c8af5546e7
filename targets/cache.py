"""Where the project caches what it builds or measures once per machine (stubs, runtimes, the host CPU's name)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "PRUNE_EXPORT_CACHE"


def cache_root() -> Path:
    """Where built stubs and fetched runtimes live: $PRUNE_EXPORT_CACHE or ~/.cache/prune-and-export."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "prune-and-export"
