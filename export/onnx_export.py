"""torch -> ONNX: fixed opset, named input/output, onnxsim, onnx.checker, onnxruntime parity, weight shapes."""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import onnx
import torch
from torch import nn

from export.errors import ExportError, ParityFailed
from export.int8 import export_form, int8_initializers, int8_linear_shapes, int8_tensors, is_int8_linear
from export.parity import compare
from export.spec import ControllerSpec

OPSET = 17
PARITY_TOLERANCE = 1e-5


@dataclass
class OnnxReport:
    """What the ONNX export produced and how it was checked."""

    opset: int
    dynamic_batch: bool
    simplified: bool
    op_types: list[str]
    weight_shapes: list[list[int]]  # rank-2 initializers, in graph order (checked against the torch layers)
    param_count: int
    n_parity: int
    parity_seed: int
    parity_max_abs_err: float  # onnxruntime vs torch on the n_parity observations of the gate (export/parity.py)

    def to_dict(self) -> dict:
        """The report as JSON-ready data."""
        return asdict(self)


def _linear_shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    floats = [(name, tuple(m.weight.shape)) for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    return floats + int8_linear_shapes(module)


def _torch_to_onnx(module: nn.Module, spec: ControllerSpec, opset: int, dynamic_batch: bool) -> onnx.ModelProto:
    example = torch.zeros(1, spec.obs_dim, dtype=torch.float32)
    buf = io.BytesIO()
    dynamic_axes = {spec.input_name: {0: "batch"}, spec.output_name: {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice is not the user's problem
            torch.onnx.export(
                module,
                (example,),
                buf,  # type: ignore[arg-type]  # a BytesIO works; the hint says path
                input_names=[spec.input_name],
                output_names=[spec.output_name],
                opset_version=opset,
                dynamic_axes=dynamic_axes,
                dynamo=False,
                do_constant_folding=True,
            )
    except Exception as e:  # torch raises many types here; the user needs the cause, in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(
            f"torch.onnx.export failed for the controller (input {spec.input_name} of shape "
            f"[1, {spec.obs_dim}]): {first}"
        ) from e
    return onnx.load_from_string(buf.getvalue())


def _simplify(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    import onnxsim  # deferred: only an export needs it, and it loads slowly

    try:
        simplified, ok = onnxsim.simplify(model)
    except Exception:  # onnxsim failing is not fatal: the unsimplified graph is still valid ONNX
        return model, False
    return (simplified, True) if ok else (model, False)


def _param_count(module: nn.Module) -> int:
    """Float parameters, plus each int8 Linear's codes and bias (the count of its float twin; scales not counted)."""
    n = sum(p.numel() for p in module.parameters())
    for m in module.modules():
        if is_int8_linear(m):
            codes, _, bias = int8_tensors(m)
            n += codes.numel() + (bias.numel() if bias is not None else 0)
    return int(n)


def check_weight_shapes(model: onnx.ModelProto, module: nn.Module) -> list[list[int]]:
    """Every torch Linear weight must appear as an ONNX initializer of the same shape (or its transpose)."""
    onnx_shapes = [list(init.dims) for init in model.graph.initializer if len(init.dims) == 2]
    pool = [tuple(s) for s in onnx_shapes]
    for name, (out_f, in_f) in _linear_shapes(module):
        for candidate in ((out_f, in_f), (in_f, out_f)):
            if candidate in pool:
                pool.remove(candidate)
                break
        else:
            raise ExportError(
                f"ONNX graph has no weight of shape [{out_f}, {in_f}] for layer {name!r} "
                f"(ONNX rank-2 weights: {onnx_shapes})"
            )
    return onnx_shapes


def ort_session(model: onnx.ModelProto | bytes | str):
    """A single-threaded onnxruntime CPU session (one thread: a controller runs at batch 1 next to other work)."""
    import onnxruntime as ort  # deferred: only parity checks and benchmarks need it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])


def ort_actions(session, spec: ControllerSpec, obs: np.ndarray, batch_one: bool) -> np.ndarray:
    """Run onnxruntime on every observation (one call per row when the graph has a static batch of 1)."""
    if not batch_one:
        return session.run(None, {spec.input_name: obs})[0]
    return np.concatenate([session.run(None, {spec.input_name: obs[i : i + 1]})[0] for i in range(len(obs))])


def export_onnx(
    module: nn.Module,
    spec: ControllerSpec,
    *,
    opset: int = OPSET,
    dynamic_batch: bool = False,
    n_parity: int = 1000,
    seed: int = 0,
    tolerance: float | np.ndarray = PARITY_TOLERANCE,
    observations: np.ndarray | None = None,
) -> tuple[onnx.ModelProto, OnnxReport]:
    """Export, simplify, check and parity-test a controller; raises ExportError on any failed step.

    Parity: onnxruntime against torch on ``observations`` (default: ``n_parity`` from the spec's box, seeded),
    within ``tolerance`` (absolute; one number or one per action dimension).
    """
    if observations is None and n_parity < 1:
        raise ExportError(f"n_parity must be >= 1, got {n_parity}")
    module = module.eval()
    model = _torch_to_onnx(
        export_form(module), spec, opset, dynamic_batch
    )  # int8 Linears as INT8 codes (export/int8.py)
    codes = int8_initializers(model)
    n_int8 = len(int8_linear_shapes(module))
    if len(codes) < n_int8:
        raise ExportError(
            f"the ONNX graph holds {len(codes)} INT8 weight(s) for {n_int8} int8 Linear(s): "
            "torch.onnx folded int8 codes into float weights"
        )
    simplified_model, simplified = _simplify(model)
    if simplified and len(int8_initializers(simplified_model)) < len(codes):
        simplified = False  # onnxsim folded int8 codes back into float weights: keep the graph as exported
    else:
        model = simplified_model
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejects the exported graph: {str(e).splitlines()[0]}") from e
    names_in = [i.name for i in model.graph.input]
    names_out = [o.name for o in model.graph.output]
    if names_in != [spec.input_name] or names_out != [spec.output_name]:
        raise ExportError(
            f"exported graph has inputs {names_in} and outputs {names_out}, expected "
            f"[{spec.input_name!r}] and [{spec.output_name!r}]"
        )
    weight_shapes = check_weight_shapes(model, module)

    obs = spec.sample_observations(n_parity, seed) if observations is None else np.asarray(observations, np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(obs)).numpy()
    try:
        got = ort_actions(ort_session(model), spec, obs, batch_one=not dynamic_batch)
    except Exception as e:
        raise ExportError(f"onnxruntime cannot run the exported graph: {str(e).strip().splitlines()[0]}") from e
    if got.shape != expected.shape:
        raise ExportError(f"onnxruntime output shape {list(got.shape)} differs from torch's {list(expected.shape)}")
    c = compare(got, expected, tolerance)
    err = c.max_abs_err
    if not c.ok:
        raise ParityFailed(
            f"onnxruntime differs from torch by {err:.3g} on action {c.action} at observation {c.row} "
            f"(> {c.threshold:g}) on {len(obs)} observations (seed {seed})",
            c.action,
            c.row,
        )
    params = _param_count(module)
    report = OnnxReport(
        opset,
        dynamic_batch,
        simplified,
        sorted({n.op_type for n in model.graph.node}),
        weight_shapes,
        params,
        len(obs),
        seed,
        err,
    )
    return model, report
