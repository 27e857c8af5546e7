"""The one JSON encoder of ``--json``: non-finite numbers are written as ``null`` (JSON has no NaN or Infinity)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(allow_nan=False)`` accepts: NaN/Inf -> None, numpy scalars and
    arrays -> Python numbers and lists, tuples -> lists, paths -> strings."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):  # numpy arrays and scalars
        return json_safe(value.tolist())
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    return value


def dumps(result: Mapping[str, Any]) -> str:
    """The ``--json`` line of a command's result."""
    return json.dumps(json_safe(result), allow_nan=False)
