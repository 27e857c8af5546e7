"""The outcome of checking one artifact against onnxruntime: verified, failed, or not verified (and why).

Written by :mod:`export.verify` (libraries) and :mod:`export.mcu.firmware` (firmware images) into the
manifest, read back by :class:`export.bundle.Manifest`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

TOLERANCE = (
    1e-5  # the absolute default of a direct verify_library call; export_bundle's gate is relative (export/parity.py)
)
VERIFIED, FAILED, NOT_VERIFIED = "verified", "failed", "not verified"


@dataclass
class Verification:
    """The outcome of running one artifact against the reference outputs."""

    target: str
    status: str  # verified | failed (ran, wrong numbers) | not verified (could not run; reason says why)
    method: str  # how the library was executed
    n: int  # observations compared
    max_abs_err: float | None  # None when it did not run
    tolerance: float | list[float]  # allowed absolute error (one per action dimension when they differ)
    reason: str = ""  # why it failed or was not verified
    worst_action: int | None = None  # where max |error| relative to its tolerance was found (None: did not run)
    worst_row: int | None = None  # ... the observation's row in the gate

    def to_dict(self) -> dict:
        """The outcome as JSON-ready data (the manifest's ``verification``)."""
        return asdict(self)
