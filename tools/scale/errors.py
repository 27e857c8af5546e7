"""The error of tools/scale: a cluster that cannot be reached or lacks what a run needs, a bad farm file, a lost board."""

from __future__ import annotations

from tools.errors import ToolsError


class ScaleError(ToolsError):
    """A failure of the fan-out (Ray missing or unreachable, a farm file, every board of a target gone)."""
