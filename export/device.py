"""The device for a target, whichever it is: the Linux stub, or a microcontroller's firmware under qemu.

:func:`open_session` picks the session by the target's kind; :func:`run_stub_batch` is the one-call
version returning the device's actions for a batch of observations.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.errors import ExportError
from export.mcu.session import FirmwareSession
from export.session import DeviceSession
from export.stub import StubSession
from targets import get_target


def open_session(
    bundle_dir: Path,
    target_name: str,
    extra_args: tuple[str, ...] = (),
    runner: str | None = None,
    public_key: Path | None = None,
) -> DeviceSession:
    """The device for ``target_name``: the Linux stub, or for a microcontroller target its firmware under qemu-system-arm.

    With ``public_key`` (a file, ``export.signing``'s format) the device runs only a bundle signed with
    its private key: the stub checks ``manifest.sig`` itself, the firmware's boot stage checks the image.
    """
    cls = FirmwareSession if get_target(target_name).kind == "mcu" else StubSession
    return cls(
        bundle_dir,
        target_name,
        extra_args=tuple(extra_args),
        runner=runner,
        public_key=Path(public_key) if public_key is not None else None,
    )


def run_stub_batch(
    bundle_dir: Path,
    target_name: str,
    observations: np.ndarray,
    runner: str | None = None,
    public_key: Path | None = None,
) -> np.ndarray:
    """The device's actions for each observation row: the stub run natively, under qemu-user or over ssh.

    ``runner`` overrides the target's own (``native``, ``qemu``, ``ssh://user@host``). Any ERROR reply
    (NaN input, failed inference, ...) raises, naming the row and the error.
    """
    obs = np.asarray(observations, dtype=np.float32)
    if obs.ndim != 2:
        raise ExportError(f"observations must be 2-D (N, obs_dim), got shape {obs.shape}")
    with open_session(bundle_dir, target_name, runner=runner, public_key=public_key) as s:
        if obs.shape[1] != s.obs_dim:
            raise ExportError(f"observations have {obs.shape[1]} columns, the bundle's controller takes {s.obs_dim}")
        return s.infer_batch(obs)[0]
