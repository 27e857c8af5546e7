"""The export itself: a torch module to a bundle folder of ONNX and verified TVM libraries or firmware.

:func:`export_bundle` runs the steps in order (ONNX export and parity, one compile per target, one
verification per target against onnxruntime, fast-math fallback) into a temporary folder and moves
it into place only when every step passed; the folder's format is :mod:`export.bundle`'s.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnx
from torch import nn

from export.bundle import FORMAT_VERSION, MANIFEST, ONNX_FILE, Manifest, move_into_place, sha256_file, versions
from export.errors import ExportError, ParityFailed
from export.mcu.firmware import McuArtifact, build_mcu_artifact, verify_mcu
from export.mcu.int_firmware import build_int_artifact, integer_only, verify_int
from export.onnx_export import OPSET, export_onnx, ort_actions, ort_session
from export.parity import parity_gate
from export.scratch import remove_stale, scratch_dir
from export.signing import load_private_key, sign_bundle
from export.spec import ControllerSpec
from export.stub import uses_kernel_plan, write_plan
from export.tvm_compile import compile_library
from export.verification import FAILED
from export.verify import verify_library
from targets import Target


def _io_records(spec: ControllerSpec, dynamic_batch: bool) -> tuple[list[dict], list[dict]]:
    batch = "batch" if dynamic_batch else 1
    inputs = [
        {
            "name": spec.input_name,
            "shape": [batch, spec.obs_dim],
            "dtype": "float32",
            "low": list(spec.obs_low),
            "high": list(spec.obs_high),
        }
    ]
    outputs = [
        {
            "name": spec.output_name,
            "shape": [batch, spec.act_dim],
            "dtype": "float32",
            "low": list(spec.act_low),
            "high": list(spec.act_high),
        }
    ]
    return inputs, outputs


def _write_manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest.to_dict(), indent=2, allow_nan=False) + "\n")


def _check_targets(targets: list[Target]) -> None:
    """Fail before any work: non-library targets and missing cross compilers, named."""
    if not targets:
        raise ExportError("no targets given")
    for t in targets:
        if t.kind not in ("linux", "mcu"):
            raise ExportError(f"target {t.name!r}: unknown kind {t.kind!r}")
        t.require_compiler()


def _prepare_destination(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise ExportError(f"{out_dir}: folder exists and is not empty (pass --force to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)


def _add_plan(folder: Path, manifest: Manifest, t: Target) -> None:
    """For a runtime-free target, write ``<target>.plan`` (from the manifest as it stands) and record it."""
    if uses_kernel_plan(t.name):
        _write_manifest(folder, manifest)  # the plan is derived from model.onnx and the library's record
        manifest.artifacts[t.name]["plan"] = write_plan(folder, t.name)


def _compile_artifact(model: onnx.ModelProto, spec: ControllerSpec, t: Target, folder: Path, fast_math: bool) -> dict:
    """Compile ``<target>.so`` into ``folder``; its manifest record (verification added later)."""
    report = compile_library(model, spec, t, folder / f"{t.name}.so", fast_math=fast_math)
    lib = folder / f"{t.name}.so"
    return {
        "file": lib.name,
        "sha256": sha256_file(lib),
        "bytes": lib.stat().st_size,
        "arch": t.arch,
        "tvm_target": dict(t.tvm),
        "target": t.to_dict(),
        "entry": "main",
        "input_shape": [1, spec.obs_dim],
        "kernels": report.kernels,
        "kernel_calls": report.kernel_calls,
        "compile_seconds": report.compile_seconds,
        "compile_flags": report.compile_flags,
        "compile": report.to_dict(),
    }


@dataclass(frozen=True)
class LibraryJob:
    """One Linux target's compile, self-contained (the ONNX bytes travel with it) so it can run in another process."""

    onnx_bytes: bytes
    spec: ControllerSpec
    target: Target
    fast_math: bool


def compile_job(job: LibraryJob) -> tuple[dict, bytes]:
    """Compile one library in a scratch folder of its own; its manifest record and the library's bytes."""
    with tempfile.TemporaryDirectory(prefix="export-compile-") as work:
        record = _compile_artifact(
            onnx.load_from_string(job.onnx_bytes), job.spec, job.target, Path(work), job.fast_math
        )
        return record, (Path(work) / record["file"]).read_bytes()


MapFn = Callable[..., Iterable[tuple[dict, bytes]]]  # map(compile_job, jobs): the builtin, or an executor's map


def export_bundle(
    module: nn.Module,
    spec: ControllerSpec,
    targets: list[Target],
    out_dir: Path,
    *,
    source_path: Path | None = None,
    source_sha256: str = "",
    architecture: dict | None = None,
    dynamic_batch: bool = False,
    opset: int = OPSET,
    n_parity: int = 1000,
    seed: int = 0,
    tolerance: float | None = None,
    runner: str | None = None,
    force: bool = False,
    fast_math: bool = True,
    progress: Callable[[str], None] | None = None,
    sign: Path | None = None,
    parity_observations: np.ndarray | None = None,
    obs_bounds: tuple | None = None,
    parity_tolerance: float | None = None,
    map_fn: MapFn = map,
) -> Manifest:
    """Export ``module`` to ONNX and one verified TVM library per target, into the bundle folder ``out_dir``.

    Any failure raises ExportError (or TargetError) and leaves nothing at ``out_dir``. A library that
    could not be executed here is kept but marked "not verified" with the reason; one that ran and
    disagrees with onnxruntime beyond the parity gate's tolerance fails the export. ``sign``: a private
    key file (:func:`export.signing.generate_keypair`); the finished bundle is signed with it (``manifest.sig``).

    The parity gate (:mod:`export.parity`, recorded as the manifest's ``onnx.parity_gate``):
    ``parity_observations`` [n, obs_dim], states the controller visits in its env, are checked, plus
    ``n_parity`` samples (``seed``) from the observation box where it is bounded; ``obs_bounds`` (low, high),
    numbers or one per dimension, is the box in the dimensions ``spec.obs_unbounded`` names (``--obs-bounds``);
    ``parity_tolerance`` (``--parity-tolerance``, default :data:`export.parity.PARITY_TOLERANCE`) allows
    ``|device - reference| <= parity_tolerance * (act_high - act_low)`` per action dimension;
    ``tolerance``, instead, an absolute error.

    ``map_fn`` (``map(fn, jobs)``, default the builtin): how the Linux targets' compiles run, each a
    self-contained :class:`LibraryJob` whose library comes back as bytes; a caller fans them out by
    passing an executor's map. The bundle's bytes do not depend on it. Firmware builds stay in this
    process (their work folder is shared with their verification).
    """
    say = progress or (lambda _msg: None)
    out_dir = Path(out_dir).resolve()  # absolute: the firmware build runs make in another folder
    _check_targets(targets)
    if sign is not None:
        load_private_key(sign)  # a bad key file fails before any work
    gate = parity_gate(
        spec,
        n_parity,
        seed,
        parity_observations=parity_observations,
        obs_bounds=obs_bounds,
        parity_tolerance=parity_tolerance,
        tolerance=tolerance,
    )  # bad gate options, too
    obs, thresholds = gate.observations, gate.thresholds
    _prepare_destination(out_dir, force)
    remove_stale(out_dir.parent, f".{out_dir.name}.mcu-work-")  # a killed export's leftovers (export/scratch.py)
    tmp = scratch_dir(out_dir.parent, f".{out_dir.name}.tmp-")
    mcu_work = tmp.with_name(tmp.name.replace(".tmp-", ".mcu-work-"))  # microcontroller build products that do not ship
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be copied and read by others
        say("ONNX: export, simplify, check, parity with onnxruntime")
        try:
            model, onnx_report = export_onnx(
                module,
                spec,
                opset=opset,
                dynamic_batch=dynamic_batch,
                n_parity=gate.n,
                seed=seed,
                tolerance=thresholds,
                observations=obs,
            )
        except ParityFailed as e:
            raise ExportError(gate.failure(f"ONNX parity: {e}", e.row)) from e
        onnx_path = tmp / ONNX_FILE
        onnx.save(model, str(onnx_path))
        inputs, outputs = _io_records(spec, dynamic_batch)
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
            source={
                "path": str(Path(source_path).resolve()) if source_path else None,
                "sha256": source_sha256 or None,
                "architecture": architecture,
            },
            spec=spec.to_dict(),
            inputs=inputs,
            outputs=outputs,
            param_count=onnx_report.param_count,
            versions=versions(),
            onnx={
                "file": ONNX_FILE,
                "sha256": sha256_file(onnx_path),
                "bytes": onnx_path.stat().st_size,
                **onnx_report.to_dict(),
                "parity_gate": gate.to_dict(),
            },
        )
        mcu_built: dict[str, McuArtifact] = {}
        linux = [t for t in targets if t.kind != "mcu"]
        if linux:
            say(f"{', '.join(t.name for t in linux)}: compile with TVM and link")
        jobs = [LibraryJob(model.SerializeToString(), spec, t, fast_math) for t in linux]
        libraries: Iterator[tuple[dict, bytes]] = iter(map_fn(compile_job, jobs))
        for t in targets:
            if integer_only(t):  # no FPU: the full-integer model, calibrated on the visited states
                say(f"{t.name}: calibrate the full-integer model, generate its C, link the soft-float firmware")
                mcu_built[t.name] = build_int_artifact(module, spec, t, tmp, mcu_work, parity_observations)
                manifest.artifacts[t.name] = mcu_built[t.name].record
                continue
            if t.kind == "mcu":  # firmware image + generated C (export/mcu/firmware.py); fails here if it does not fit
                say(f"{t.name}: compile the kernels with TVM ({t.tvm}), generate the C driver, link the firmware")
                mcu_built[t.name] = build_mcu_artifact(model, spec, t, tmp, mcu_work, fast_math)
                manifest.artifacts[t.name] = mcu_built[t.name].record
                continue
            record, library = next(libraries)  # in the order of the Linux targets
            (tmp / record["file"]).write_bytes(library)
            (tmp / record["file"]).chmod(0o755)  # as the linker made it
            manifest.artifacts[t.name] = record
            _add_plan(tmp, manifest, t)
        _write_manifest(tmp, manifest)  # the stub checks hashes against it during verification

        reference = ort_actions(ort_session(onnx_path.read_bytes()), spec, obs, batch_one=not dynamic_batch)
        for t in targets:
            say(f"{t.name}: verify against onnxruntime on {gate.n} observations")
            if integer_only(t):  # exact: the host twin, bit for bit (the float gap is recorded, not gated)
                v = verify_int(tmp, t, mcu_built[t.name], obs, reference)
                if v.status == FAILED:
                    raise ExportError(gate.failure(f"target {t.name!r}: {v.reason} on {v.n} observations", v.worst_row))
                manifest.artifacts[t.name]["verification"] = v.to_dict()
                continue
            if t.kind == "mcu":
                v = verify_mcu(tmp, t, mcu_built[t.name], obs, reference, thresholds)
                if v.status == FAILED and fast_math:  # as for libraries below: exact exp/tanh if fast math crossed it
                    say(f"{t.name}: {v.reason} with fast math; rebuilding with exact exp/tanh")
                    mcu_built[t.name] = build_mcu_artifact(model, spec, t, tmp, mcu_work, False)
                    manifest.artifacts[t.name] = mcu_built[t.name].record
                    manifest.artifacts[t.name]["compile_flags"]["fast_math_fallback"] = v.reason
                    _write_manifest(tmp, manifest)
                    v = verify_mcu(tmp, t, mcu_built[t.name], obs, reference, thresholds)
                if v.status == FAILED:
                    raise ExportError(
                        gate.failure(f"target {t.name!r}: {v.reason} on {v.n} observations (seed {seed})", v.worst_row)
                    )
                manifest.artifacts[t.name]["verification"] = v.to_dict()
                continue
            v = verify_library(tmp, t, obs, reference, thresholds, runner=runner)
            if v.status == FAILED and fast_math:
                # fast exp/tanh cost a few ulps; on a model where that crosses the tolerance, ship exact math
                say(f"{t.name}: {v.reason} with fast math; recompiling with exact exp/tanh")
                manifest.artifacts[t.name] = _compile_artifact(model, spec, t, tmp, False)
                manifest.artifacts[t.name]["compile_flags"]["fast_math_fallback"] = v.reason
                _add_plan(tmp, manifest, t)
                _write_manifest(tmp, manifest)
                v = verify_library(tmp, t, obs, reference, thresholds, runner=runner)
            if v.status == FAILED:
                raise ExportError(
                    gate.failure(
                        f"target {t.name!r}: {t.name}.so {v.reason} on {v.n} observations (seed {seed})", v.worst_row
                    )
                )
            manifest.artifacts[t.name]["verification"] = v.to_dict()
        _write_manifest(tmp, manifest)
        if sign is not None:
            say(f"signing manifest.json with {sign}")
            sign_bundle(tmp, sign)
        move_into_place(tmp, out_dir)
        say(f"bundle written to {out_dir}")
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(mcu_work, ignore_errors=True)
