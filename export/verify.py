"""Prove each compiled library computes what onnxruntime computes, on the same observations.

Libraries the host can execute (x86-64) run in-process through ``relax.VirtualMachine``. Libraries for
other architectures are executed for real by the firmware stub (:mod:`export.stub`: built per target,
run under qemu-user, on a board over ssh, or natively). Nothing is reported as verified that did not run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from export.device import run_stub_batch
from export.parity import compare
from export.verification import FAILED, NOT_VERIFIED, TOLERANCE, VERIFIED, Verification
from targets import Target, host_arch, host_cpu_flags


def run_library_in_process(library: Path, obs: np.ndarray) -> np.ndarray:
    """Load a host-architecture library with TVM's runtime and call ``main`` once per observation (batch 1)."""
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    main = vm["main"]
    return np.concatenate([main(tvm.runtime.tensor(obs[i : i + 1])).numpy() for i in range(len(obs))])


def _tolerance_record(tolerance: float | np.ndarray) -> float | list[float]:
    values = [float(v) for v in np.atleast_1d(np.asarray(tolerance, np.float64))]
    return values[0] if len(set(values)) == 1 else values


def _compare(
    target: Target, method: str, got: np.ndarray, reference: np.ndarray, tolerance: float | np.ndarray
) -> Verification:
    record = _tolerance_record(tolerance)
    if got.shape != reference.shape:
        return Verification(
            target.name,
            FAILED,
            method,
            len(reference),
            None,
            record,
            f"output shape {list(got.shape)} differs from onnxruntime's {list(reference.shape)}",
        )
    c = compare(got, reference, tolerance)
    if not c.ok:
        return Verification(
            target.name,
            FAILED,
            method,
            len(reference),
            c.max_abs_err,
            record,
            f"differs from onnxruntime by {c.max_abs_err:.3g} on action {c.action} at observation "
            f"{c.row} (> {c.threshold:g})",
            c.action,
            c.row,
        )
    return Verification(target.name, VERIFIED, method, len(reference), c.max_abs_err, record, "", c.action, c.row)


def verify_library(
    bundle_dir: Path,
    target: Target,
    obs: np.ndarray,
    reference: np.ndarray,
    tolerance: float | np.ndarray = TOLERANCE,
    runner: str | None = None,
) -> Verification:
    """Execute ``<target>.so`` of the bundle on ``obs`` and compare with ``reference`` (onnxruntime's outputs).

    ``tolerance``: the allowed absolute error, one number or one per action dimension (export/parity.py).
    """
    library = Path(bundle_dir) / f"{target.name}.so"
    chosen = runner or target.runner or "auto"
    on_board = chosen.startswith("ssh://")  # a real board was named: run it there, even for the host's arch
    if target.arch == host_arch() and not on_board:
        if not target.runs_on_host:
            missing = sorted(set(target.host_flags) - host_cpu_flags())
            return Verification(
                target.name,
                NOT_VERIFIED,
                "relax.VirtualMachine (in-process)",
                0,
                None,
                _tolerance_record(tolerance),
                f"this CPU lacks {', '.join(missing)}",
            )
        got = run_library_in_process(library, obs)
        return _compare(target, "relax.VirtualMachine (in-process)", got, reference, tolerance)
    how = {"auto": "native" if target.arch == host_arch() else "qemu-user"}.get(chosen, chosen).split("?")[0]
    method = f"firmware stub ({how})"
    try:
        got = np.asarray(run_stub_batch(Path(bundle_dir), target.name, obs, runner=runner), dtype=np.float32)
    except Exception as e:  # the stub build/run names its own cause; record it instead of hiding it
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return Verification(
            target.name, NOT_VERIFIED, method, 0, None, _tolerance_record(tolerance), f"stub run failed: {first}"
        )
    return _compare(
        target, method, got.reshape(reference.shape) if got.size == reference.size else got, reference, tolerance
    )
