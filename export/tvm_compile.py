"""ONNX -> TVM Relax -> a shared library per target: fused, weights folded, kernels hand-scheduled."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx, onnx_frontend

from export.errors import ExportError
from export.fast_math import fast_math as fast_math_transform
from export.int8_kernels import keep_int8_weights
from export.schedule import schedule_module, schedule_rule
from export.spec import ControllerSpec
from targets import Target

PIPELINES = ("scheduled", "fused", "default")  # scheduled = fused + our kernel schedule (what bundles ship)


@dataclass
class CompileReport:
    """How one library was built: the pipeline, its kernels, its size and how long it took."""

    target: str
    pipeline: str
    kernels: int  # distinct compiled kernels (layers of equal shape share one)
    kernel_calls: int  # kernel launches per inference
    kernel_names: list[str]
    scheduled_kernels: list[str]
    library_bytes: int
    compile_seconds: float
    compile_flags: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The report as JSON-ready data."""
        return asdict(self)


def check_supported_ops(model: onnx.ModelProto, where: str = "model.onnx") -> None:
    """Refuse, by name, any op TVM's ONNX importer has no converter for (before it fails deep inside)."""
    known = onnx_frontend._get_convert_map()  # TVM has no public list of the ops its importer converts
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in known:
            raise ExportError(
                f"{where}: TVM's ONNX importer does not support op {node.op_type!r} "
                f"(node {node.name or '?'}); use another activation or layer"
            )


def import_onnx(model: onnx.ModelProto, spec: ControllerSpec, where: str = "model.onnx"):
    """ONNX -> Relax IRModule with the input fixed to batch 1 (the device calls the controller one frame at a time).

    Int8 weights (:mod:`export.int8`) are read by their matmuls as int8 (:mod:`export.int8_kernels`), so
    constant folding cannot turn them back into float arrays; a float graph is imported as it always was.
    """
    check_supported_ops(model, where)
    try:
        mod = from_onnx(model, shape_dict={spec.input_name: [1, spec.obs_dim]}, keep_params_in_input=False)
    except Exception as e:  # the importer raises assorted TVM errors; keep the first line
        raise ExportError(f"{where}: TVM's ONNX importer rejects the graph: {str(e).strip().splitlines()[0]}") from e
    return keep_int8_weights(mod)


def lower(mod, target: Target, pipeline: str = "scheduled", fast_math: bool = True):
    """Relax IRModule -> IRModule ready for ``tvm.compile``, plus the names of the hand-scheduled kernels.

    ``fast_math`` (scheduled pipeline only) swaps exp/tanh for TVM's vectorisable polynomial versions
    (exp's floor without a library call, :mod:`export.fast_math`):
    1-3 µs less per call for ELU/tanh MLPs; every library is still checked against onnxruntime at 1e-5.
    """
    if pipeline not in PIPELINES:
        raise ExportError(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")
    if pipeline == "default":
        return mod, []
    if pipeline == "scheduled" and fast_math:
        mod = fast_math_transform(mod)
    # "zero" = legalize, annotate op patterns, fold constants (weights transposed once), fuse ops and TIR.
    mod = relax.get_pipeline("zero")(mod)
    if pipeline == "fused":
        return mod, []
    mod, report = schedule_module(mod, lanes=target.vector_lanes, unroll=2)
    return mod, report.scheduled


def _prim_func_names(mod) -> list[str]:
    return sorted(gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc))


def build(
    model: onnx.ModelProto, spec: ControllerSpec, target: Target, pipeline: str = "scheduled", fast_math: bool = True
):
    """Compile the ONNX graph for ``target``: (executable, kernel names, scheduled kernel names, kernel calls)."""
    tvm_target = target.tvm_target()
    mod, scheduled = lower(import_onnx(model, spec), target, pipeline, fast_math)
    kernels = _prim_func_names(mod)
    calls = mod["main"].script().count("R.call_tir(") if pipeline != "default" else None
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # TVM prints notices on stdout; keep --json output clean
            ex = tvm.compile(mod, target=tvm_target)
    except Exception as e:
        raise ExportError(
            f"target {target.name!r}: TVM failed to compile the model: {str(e).strip().splitlines()[0]}"
        ) from e
    if pipeline == "default":  # tvm.compile legalizes internally; count the kernels it will make
        legal = relax.transform.LegalizeOps()(mod)
        kernels, calls = _prim_func_names(legal), legal["main"].script().count("R.call_tir(")
    return ex, kernels, scheduled, calls


def compile_library(
    model: onnx.ModelProto,
    spec: ControllerSpec,
    target: Target,
    out_path: Path,
    pipeline: str = "scheduled",
    fast_math: bool = True,
) -> CompileReport:
    """Compile for ``target`` and link ``out_path`` with the target's (cross) C compiler."""
    if target.kind != "linux":
        raise ExportError(
            f"target {target.name!r} is a {target.kind} target: shared libraries are built only for "
            "Linux targets (bare-metal firmware is not built yet)"
        )
    cc = target.require_compiler()
    start = time.perf_counter()
    ex, kernels, scheduled, calls = build(model, spec, target, pipeline, fast_math)
    try:
        ex.export_library(str(out_path), cc=cc)
    except Exception as e:
        raise ExportError(
            f"target {target.name!r}: linking {Path(out_path).name} with {target.cc} failed: "
            f"{str(e).strip().splitlines()[0]}"
        ) from e
    seconds = time.perf_counter() - start
    flags = {
        "pipeline": pipeline,
        "relax_pipeline": "zero" if pipeline != "default" else "default",
        "schedule": schedule_rule(target.vector_lanes, 2) if pipeline == "scheduled" else None,
        "fast_math": bool(fast_math and pipeline == "scheduled"),
        "cc": target.cc,
        "batch": 1,
        # what the code needs of the CPU that runs it: the stub refuses the library on a CPU without these flags
        "cpu": str(target.tvm.get("mcpu") or "generic"),
        "cpu_flags": " ".join(target.host_flags),
    }
    return CompileReport(
        target.name,
        pipeline,
        len(kernels),
        calls,
        kernels,
        scheduled,
        Path(out_path).stat().st_size,
        round(seconds, 3),
        flags,
    )
