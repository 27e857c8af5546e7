"""Export of the TD-MPC agent: the policy path as a controller bundle, one MPPI iteration as ONNX + TVM.

- The policy path (h then pi, :class:`tools.tdmpc.PolicyPath`) is an obs -> torque controller and
  goes through :func:`export.bundle.export_bundle` like the MLP (ONNX, parity, TVM per target).
- The planner step (:class:`PlannerStep`: one :func:`tools.tdmpc.mppi_iteration`) takes the latent
  z, the current mean and std and the sampled noise as inputs and returns the new mean and std, so
  the graph is deterministic and the device's loop owns the random numbers. It is exported to one
  ONNX graph, checked against torch with onnxruntime, compiled by TVM for x86_64 (the scheduled Relax
  pipeline, weights folded: its 33-row matrix products register-blocked by
  ``export/batched_schedule.py``), checked against onnxruntime again, and timed at batch 1.
- The packed planner step (:class:`PackedPlannerStep`) is the same iteration with one input vector
  [z, mean, std, noise] and one output vector [new_mean, new_std], the shape of a controller, so it
  goes through :func:`export.bundle.export_bundle` (parity on every target, ARM ones inside the
  firmware stub under qemu-user) and the stub's ``bench`` mode times it on the device. With the
  agent's 32 samples its input (134 floats for the shipped agent) is more than one frame: the host
  sends it as a multi-part request (PROTOCOL.md); ``tools/usecases/tdmpc/hil.py`` plans with it in
  lockstep against the host.
"""

from __future__ import annotations

import contextlib
import functools
import io
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import torch
from torch import nn

from export import OPSET, ControllerSpec, ExportError, check_supported_ops, export_bundle, frames, lower, ort_session
from targets import get_target
from tools.bench.latency import median_call_us
from tools.usecases.tdmpc.agent import PlannerConfig, TDMPCAgent, mppi_iteration

STEP_INPUTS = ("z", "mean", "std", "noise")
STEP_OUTPUTS = ("new_mean", "new_std")
PARITY_TOLERANCE = 1e-4  # sums over horizon steps of rewards and Q values in the hundreds: float32 ulps add up


class PlannerStep(nn.Module):
    """One MPPI iteration over the agent's learned model, batch 1: (z, mean, std, noise) -> (mean, std)."""

    def __init__(self, agent: TDMPCAgent, cfg: PlannerConfig) -> None:
        super().__init__()
        self.agent, self.cfg = agent, cfg

    def forward(
        self, z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return mppi_iteration(self.agent, z, mean, std, noise, self.cfg)


class LatentModel(nn.Module):
    """The agent's parts a planner step uses (dynamics, reward, policy, q; the same modules, not copies), without the encoder.

    The step's input is z, so the encoder is not in its graph; leaving it out keeps export's check
    "every Linear has its weight in the ONNX graph" meaningful.
    """

    def __init__(self, agent: TDMPCAgent) -> None:
        super().__init__()
        self.cfg = agent.cfg
        self.dynamics, self.reward, self.policy, self.q = agent.dynamics, agent.reward, agent.policy, agent.q

    next = TDMPCAgent.next
    q_min = TDMPCAgent.q_min


class PackedPlannerStep(nn.Module):
    """:class:`PlannerStep` behind one flat vector each way: [z, mean, std, noise] (B, n_in) -> [new_mean, new_std] (B, n_out)."""

    def __init__(self, agent: TDMPCAgent, cfg: PlannerConfig) -> None:
        super().__init__()
        self.step = PlannerStep(cast(TDMPCAgent, LatentModel(agent)), cfg)  # the same attributes a planner step reads
        L, A, H, S = agent.cfg.latent, agent.cfg.act_dim, cfg.horizon, cfg.samples
        # fixed sizes: the slices and reshapes become constants in the ONNX graph
        self.sizes = (L, H * A, H * A, S * H * A)
        self.shapes = ((-1, L), (-1, H, A), (-1, H, A), (-1, S, H, A))  # -1: the batch (1 on the device)

    @property
    def in_dim(self) -> int:
        return sum(self.sizes)

    @property
    def out_dim(self) -> int:
        return 2 * self.sizes[1]

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        # narrow, not split: one Slice per part, as the runtime-free armv7 stub takes no tuple-valued kernels
        starts = np.cumsum((0,) + self.sizes[:-1])
        z, mean, std, noise = (
            packed.narrow(1, int(s), n).reshape(shape) for s, n, shape in zip(starts, self.sizes, self.shapes)
        )
        new_mean, new_std = self.step(z, mean, std, noise)
        return torch.cat([new_mean.flatten(1), new_std.flatten(1)], dim=1)


def pack_inputs(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """One input set of :func:`step_inputs` as the packed step's (1, n_in) float32 vector."""
    return np.concatenate([inputs[k].reshape(1, -1) for k in STEP_INPUTS], axis=1).astype(np.float32)


def step_inputs(agent: TDMPCAgent, cfg: PlannerConfig, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """n seeded input sets for the planner step: z from encoded Pendulum observations, mean in [-1, 1], std in [min, max]."""
    g = torch.Generator().manual_seed(seed)
    A, H = agent.cfg.act_dim, cfg.horizon
    out = []
    for _ in range(n):
        th = (torch.rand(1, generator=g) * 2 - 1) * np.pi
        obs = torch.stack([th.cos(), th.sin(), (torch.rand(1, generator=g) * 2 - 1) * 8], dim=1)
        with torch.no_grad():
            z = agent.encoder(obs)
        out.append(
            {
                "z": z.numpy(),
                "mean": (torch.rand(1, H, A, generator=g) * 2 - 1).numpy(),
                "std": (cfg.min_std + torch.rand(1, H, A, generator=g) * (cfg.max_std - cfg.min_std)).numpy(),
                "noise": torch.randn(1, cfg.samples, H, A, generator=g).numpy(),
            }
        )
    return out


@dataclass
class StepExport:
    """What exporting the planner step produced, how it was checked and how fast it runs (batch 1, one thread)."""

    onnx_file: str
    onnx_bytes: int
    op_types: list[str]
    params: int
    n_parity: int
    parity_seed: int
    ort_max_abs_err: float  # onnxruntime vs torch
    tvm: dict  # target -> {file, bytes, max_abs_err vs onnxruntime, compile_seconds, latency_us}
    latency_us: dict  # runtime -> median microseconds per planner step
    planning_us_per_control_step: dict  # runtime -> iterations x step (encoder not included)

    def to_dict(self) -> dict:
        return asdict(self)


def export_step_onnx(step: PlannerStep, path: Path, opset: int = OPSET) -> onnx.ModelProto:
    """Write the planner step as one ONNX graph (static batch 1) and return it after onnx.checker."""
    example = tuple(torch.from_numpy(v) for v in step_inputs(step.agent, step.cfg, 1, 0)[0].values())
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # torch.onnx.export writes to a file object too (its annotation names paths only)
            torch.onnx.export(
                step.eval(),
                example,
                buf,  # type: ignore[arg-type]
                input_names=list(STEP_INPUTS),
                output_names=list(STEP_OUTPUTS),
                opset_version=opset,
                dynamo=False,
                do_constant_folding=True,
            )
    except Exception as e:
        raise ExportError(f"torch.onnx.export failed for the planner step: {str(e).strip().splitlines()[0]}") from e
    model = onnx.load_from_string(buf.getvalue())
    try:
        import onnxsim

        simplified, ok = onnxsim.simplify(model)
        model = simplified if ok else model
    except Exception:  # onnxsim failing is not fatal: the graph is still valid ONNX
        pass
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"onnx.checker rejects the planner step graph: {str(e).splitlines()[0]}") from e
    onnx.save(model, str(path))
    return model


def _max_err(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(max(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))) for x, y in zip(a, b)))


def compile_step(model: onnx.ModelProto, inputs: dict[str, np.ndarray], target, out: Path):
    """TVM: ONNX -> Relax (scheduled pipeline, weights folded) -> shared library for ``target``; returns (vm main, seconds)."""
    start = time.perf_counter()
    main, _ = compile_step_pipeline(model, inputs, target, out, "scheduled")
    return main, time.perf_counter() - start


def compile_step_pipeline(model: onnx.ModelProto, inputs: dict[str, np.ndarray], target, out: Path, pipeline: str):
    """:func:`compile_step` with a given lowering pipeline; returns (vm main or None off x86_64, the scheduled kernels)."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    check_supported_ops(model, out.name)
    mod = from_onnx(model, shape_dict={k: list(v.shape) for k, v in inputs.items()}, keep_params_in_input=False)
    mod, scheduled = lower(mod, target, pipeline=pipeline)  # "scheduled": batch-1 and batched products scheduled
    with contextlib.redirect_stdout(io.StringIO()):
        ex = tvm.compile(mod, target=target.tvm_target())
    ex.export_library(str(out), cc=target.require_compiler())
    if target.arch != "x86_64":
        return None, scheduled
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(out)), tvm.cpu())
    return vm["main"], scheduled


def export_planner_step(
    agent: TDMPCAgent,
    cfg: PlannerConfig,
    out_dir: Path,
    targets=("x86_64",),
    n_parity: int = 50,
    seed: int = 0,
    calls: int = 200,
) -> StepExport:
    """Export, check and time one MPPI iteration of ``agent`` into ``out_dir`` (planner_step.onnx, planner_step-<target>.so)."""
    import tvm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    step = PlannerStep(agent.eval(), cfg)
    onnx_path = out_dir / "planner_step.onnx"
    model = export_step_onnx(step, onnx_path)
    sess = ort_session(model)
    sets = step_inputs(agent, cfg, n_parity, seed)
    ort_out, torch_out = [], []
    with torch.no_grad():
        for s in sets:
            torch_out.append([t.numpy() for t in step(*(torch.from_numpy(v) for v in s.values()))])
            ort_out.append(sess.run(None, s))
    err = max(_max_err(a, b) for a, b in zip(torch_out, ort_out))
    if not np.isfinite(err) or err > PARITY_TOLERANCE:
        raise ExportError(
            f"{onnx_path}: onnxruntime differs from torch by {err:.3g} (> {PARITY_TOLERANCE:g}) on {n_parity} inputs (seed {seed})"
        )
    latency = {}
    one = sets[0]
    with torch.no_grad():
        latency["torch"] = median_call_us(
            lambda: step(*(torch.from_numpy(v) for v in one.values())), calls, warmup=min(20, calls)
        )
    latency["onnxruntime"] = median_call_us(lambda: sess.run(None, one), calls, warmup=min(20, calls))
    tvm_records = {}
    for name in targets:
        target = get_target(name)
        lib = out_dir / f"planner_step-{name}.so"
        main, seconds = compile_step(model, one, target, lib)
        record = {
            "file": lib.name,
            "bytes": lib.stat().st_size,
            "compile_seconds": round(seconds, 2),
            "tvm_target": dict(target.tvm),
        }
        if main is not None:
            args = {k: tvm.runtime.tensor(v) for k, v in one.items()}
            tvm_err = 0.0
            for s, ref in zip(sets, ort_out):
                got = main(*(tvm.runtime.tensor(v) for v in s.values()))
                tvm_err = max(tvm_err, _max_err([g.numpy() for g in got], ref))
            if not np.isfinite(tvm_err) or tvm_err > PARITY_TOLERANCE:
                raise ExportError(
                    f"{lib}: TVM differs from onnxruntime by {tvm_err:.3g} (> {PARITY_TOLERANCE:g}) on {n_parity} inputs"
                )
            record["max_abs_err_vs_onnxruntime"] = tvm_err
            argv = [args[k] for k in STEP_INPUTS]
            latency[f"tvm-{name}"] = record["latency_us"] = median_call_us(
                functools.partial(main, *argv), calls, warmup=min(20, calls)
            )
        else:
            record["max_abs_err_vs_onnxruntime"] = None
            record["note"] = "cross-compiled only; not executed here"
        tvm_records[name] = record
    return StepExport(
        onnx_path.name,
        onnx_path.stat().st_size,
        sorted({n.op_type for n in model.graph.node}),
        int(sum(p.numel() for p in agent.parameters())),
        n_parity,
        seed,
        err,
        tvm_records,
        latency,
        {k: v * cfg.iterations for k, v in latency.items()},
    )


# -- the packed planner step as a controller bundle (runs in the firmware stub, on the device) --------

PACKED_ENV_ID = "tdmpc-planner-step"  # not a gymnasium task: the bundle is one planner iteration
NOISE_BOUND = 3.0  # standard normal noise beyond 3 sigma is rare; parity inputs are drawn in [-3, 3]
LATENT_PAD = 0.1  # z bounds: the encoder's range over the Pendulum-v1 observation box, widened by 10% each side


def packed_floats(latent: int, act_dim: int, cfg: PlannerConfig) -> int:
    """Floats of the packed step's input [z, mean, std, noise]."""
    return latent + (2 + cfg.samples) * cfg.horizon * act_dim


def device_planner(agent: TDMPCAgent, cfg: PlannerConfig) -> PlannerConfig:
    """The planner the device runs: the agent's own (all its samples), once its packed input fits one device request.

    An input of more than one frame's 64 floats goes as a multi-part request (PROTOCOL.md, protocol
    version 2), so the samples are no longer cut to fit a frame; only an input beyond the stub's largest
    request is refused.
    """
    n = packed_floats(agent.cfg.latent, agent.cfg.act_dim, cfg)
    if n > frames.MAX_REQUEST_FLOATS:
        raise ExportError(
            f"the planner step's input ({n} floats: latent {agent.cfg.latent}, {cfg.samples} samples x horizon "
            f"{cfg.horizon} x {agent.cfg.act_dim} actions) exceeds the device protocol's largest request "
            f"({frames.MAX_REQUEST_FLOATS} floats)"
        )
    return cfg


def latent_bounds(agent: TDMPCAgent, pad: float = LATENT_PAD, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit range of the encoder's output over a grid of the whole Pendulum-v1 observation box, padded."""
    th, thdot = torch.meshgrid(torch.linspace(-np.pi, np.pi, n), torch.linspace(-8.0, 8.0, n), indexing="ij")
    obs = torch.stack([th.cos().flatten(), th.sin().flatten(), thdot.flatten()], dim=1)
    with torch.no_grad():
        z = agent.encoder(obs).numpy()
    lo, hi = z.min(axis=0), z.max(axis=0)
    width = np.maximum(hi - lo, 1e-3)
    return lo - pad * width, hi + pad * width


def packed_spec(agent: TDMPCAgent, cfg: PlannerConfig) -> ControllerSpec:
    """The packed step's contract: inputs [z, mean, std, noise] in the ranges the planner feeds it, outputs [mean, std].

    Output bounds hold every value the step can produce (mean is a weighted average of actions in
    [-1, 1], std is clamped to [min_std, max_std]); nothing in export or the stub clips to them.
    """
    z_lo, z_hi = latent_bounds(agent)
    HA, SHA = cfg.horizon * agent.cfg.act_dim, cfg.samples * cfg.horizon * agent.cfg.act_dim
    low = [*map(float, z_lo), *[-1.0] * HA, *[cfg.min_std] * HA, *[-NOISE_BOUND] * SHA]
    high = [*map(float, z_hi), *[1.0] * HA, *[cfg.max_std] * HA, *[NOISE_BOUND] * SHA]
    return ControllerSpec(
        len(low),
        2 * HA,
        tuple(low),
        tuple(high),
        tuple([-1.0] * HA + [cfg.min_std] * HA),
        tuple([1.0] * HA + [cfg.max_std] * HA),
        env_id=PACKED_ENV_ID,
        input_name="z_mean_std_noise",
        output_name="new_mean_std",
        extra={
            "planner": asdict(cfg),
            "layout": {
                "in": dict(zip(STEP_INPUTS, (agent.cfg.latent, HA, HA, SHA))),
                "out": dict(zip(STEP_OUTPUTS, (HA, HA))),
            },
        },
    )


def export_packed_step(
    agent: TDMPCAgent,
    cfg: PlannerConfig,
    out_dir: Path,
    targets: tuple[str, ...],
    *,
    seed: int = 0,
    n_parity: int = 200,
    progress=None,
):
    """The packed planner step as a bundle (ONNX + one verified library per target; ARM ones run in the stub under qemu)."""
    step = PackedPlannerStep(agent.eval(), cfg).eval()
    return export_bundle(
        step,
        packed_spec(agent, cfg),
        [get_target(t) for t in targets],
        Path(out_dir),
        seed=seed,
        n_parity=n_parity,
        tolerance=PARITY_TOLERANCE,
        force=True,
        progress=progress,
    )
