"""The yardsticks a latency row is read against: twenty lines of plain C, and the machine's own floors.

- **plain C, four outputs per pass** (``plain_mlp.c``, ``gcc -O3 -march=native -ffast-math``): the
  loop anyone would write, four accumulators sharing each read of the input. Its actions are checked
  against torch on non-saturating observations before it is timed, like every other row.
- **compute floor**: the model's multiply-adds at the rate one core sustains on independent FMA
  chains (measured here, not taken from a data sheet).
- **weight-streaming floor**: the weights' bytes at the rate one core reads a buffer of that size
  again and again (so from the cache level the weights live in: the 10% model's fit L1, the
  unpruned model's L2).

The program is built once per machine and source (``-march=native`` ties it to this CPU) into the cache.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import struct
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from export import PARITY_TOLERANCE, ControllerSpec
from targets import cache_root, host_cpu_flags
from tools.bench.latency import StubCheck, non_saturating
from tools.controllers.native import BoundedOutput, ClipOutput
from tools.errors import ToolsError

SOURCE = Path(__file__).with_name("plain_mlp.c")
CFLAGS = ("-O3", "-march=native", "-ffast-math")
PLAIN_C = "plain-c (4 outputs/pass)"
COMPUTE_FLOOR = "compute floor"
STREAM_FLOOR = "weight-streaming floor"
_ACTIVATIONS: dict[type, int] = {nn.ELU: 1, nn.ReLU: 2, nn.Tanh: 3}
_SQUASH: dict[type, int] = {BoundedOutput: 1, ClipOutput: 2}


def plain_c_program() -> Path:
    """Build (or reuse from the cache) ``plain_mlp`` for this machine; a ToolsError names a missing gcc."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ToolsError("the plain-C rows need gcc on PATH (Debian: apt-get install gcc)")
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    key = hashlib.sha256(
        SOURCE.read_bytes() + " ".join([*CFLAGS, *version, platform.machine(), *sorted(host_cpu_flags())]).encode()
    ).hexdigest()[:12]
    exe = cache_root() / "plain_mlp" / key / "plain_mlp"
    if exe.is_file():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_name(f".plain_mlp.{key}.tmp")
    r = subprocess.run([gcc, *CFLAGS, "-o", str(tmp), str(SOURCE), "-lm"], capture_output=True, text=True)
    if r.returncode != 0:
        raise ToolsError(f"building {SOURCE.name} with gcc failed: {r.stderr.strip()[-300:]}")
    tmp.replace(exe)
    return exe


def write_model(module: nn.Module, path: Path) -> None:
    """The MLP in ``plain_mlp.c``'s format; a ToolsError for a module that is not Linear/activation pairs + squash."""
    layers: list[list] = []
    squash, low, high = 0, np.zeros(0), np.zeros(0)
    for m in module.modules() if not isinstance(module, nn.Sequential) else module:
        if isinstance(m, nn.Linear):
            layers.append([m, 0])
        elif type(m) in _ACTIVATIONS and layers and layers[-1][1] == 0:
            if isinstance(m, nn.ELU) and m.alpha != 1.0:
                raise ToolsError("plain C row: ELU with alpha != 1 is not supported")
            layers[-1][1] = _ACTIVATIONS[type(m)]
        elif type(m) in _SQUASH:
            squash, low, high = _SQUASH[type(m)], np.asarray(m.low), np.asarray(m.high)
        elif not isinstance(m, nn.Sequential):
            raise ToolsError(f"plain C row: layer {type(m).__name__} is not supported (Linear, ELU, ReLU, Tanh only)")
    if not layers:
        raise ToolsError("plain C row: the module has no Linear layer")
    act_dim = layers[-1][0].out_features
    blob = bytearray(struct.pack("<I", len(layers)))
    with torch.no_grad():
        for lin, act in layers:
            blob += struct.pack("<III", lin.in_features, lin.out_features, act)
            blob += lin.weight.detach().numpy().astype("<f4").tobytes()
            bias = lin.bias if lin.bias is not None else torch.zeros(lin.out_features)
            blob += bias.detach().numpy().astype("<f4").tobytes()
    lo = low if low.size else np.zeros(act_dim)
    hi = high if high.size else np.zeros(act_dim)
    blob += struct.pack("<I", squash) + np.broadcast_to(lo, act_dim).astype("<f4").tobytes()
    blob += np.broadcast_to(hi, act_dim).astype("<f4").tobytes()
    Path(path).write_bytes(bytes(blob))


def _run(args: list[str]) -> str:
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise ToolsError(f"{Path(args[0]).name} {args[1]}: exit {r.returncode}: {r.stderr.strip()[-300:]}")
    return r.stdout


@dataclass
class PlainC:
    """The plain-C loop for one model: its check against torch and its latency (µs, per-call clock like the stub)."""

    check: StubCheck
    p50_us: float
    mean_us: float
    p99_us: float
    min_us: float
    max_us: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["check"] = self.check.to_dict()
        return d


def plain_c_bench(
    module: nn.Module, spec: ControllerSpec, obs: np.ndarray, n: int, warmup: int, check_n: int, seed: int
) -> PlainC:
    """Check the plain-C loop against torch on ``check_n`` non-saturating inputs (raise above tolerance), then time it."""
    exe = plain_c_program()
    with tempfile.TemporaryDirectory(prefix="plain_mlp.") as d:
        folder = Path(d)
        write_model(module, folder / "model.bin")

        def reference(o: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return module(torch.from_numpy(o)).numpy()

        check_obs, expected = non_saturating(spec, reference, check_n, seed)
        np.asarray(check_obs, "<f4").tofile(folder / "check.f32")
        _run([str(exe), "check", str(folder / "model.bin"), str(folder / "check.f32"), str(folder / "act.f32")])
        got = np.fromfile(folder / "act.f32", "<f4").astype(np.float64).reshape(expected.shape)
        span = np.asarray(spec.act_high, np.float64) - np.asarray(spec.act_low, np.float64)
        allowed = PARITY_TOLERANCE * np.where(np.isfinite(span) & (span > 0), span, 1.0)
        err = np.abs(got - expected)
        check = StubCheck("plain-c", "torch", len(check_obs), float(err.max()), float(allowed.min()))
        if not np.all(err <= allowed):
            raise ToolsError(
                f"plain C loop: max |plain C - torch| {check.max_error:.3g} on {check.inputs} non-saturating "
                f"inputs exceeds {allowed.min():.3g}; not timing it"
            )
        np.asarray(obs, "<f4").tofile(folder / "obs.f32")
        out = json.loads(
            _run([str(exe), "bench", str(folder / "model.bin"), str(folder / "obs.f32"), str(n), str(warmup)])
        )
    return PlainC(
        check, out["p50_ns"] / 1e3, out["mean_ns"] / 1e3, out["p99_ns"] / 1e3, out["min_ns"] / 1e3, out["max_ns"] / 1e3
    )


@dataclass
class Floors:
    """What this core can do at best: multiply-adds per ns, and bytes per ns read from a weights-sized buffer."""

    macs_per_ns: float
    fma_lanes: int
    stream_bytes_per_ns: dict[str, float]  # model -> rate for a buffer of that model's weight bytes

    def to_dict(self) -> dict:
        return asdict(self)


def macs(module: nn.Module) -> int:
    """Multiply-adds of one batch-1 inference (the Linear layers)."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


def weight_bytes(module: nn.Module) -> int:
    """Bytes of float32 parameters one inference reads."""
    return 4 * sum(p.numel() for p in module.parameters())


def measure_floors(models: dict[str, nn.Module]) -> Floors:
    """The compute rate once, the streaming rate once per model's weight size."""
    exe = str(plain_c_program())
    peak = json.loads(_run([exe, "peak"]))
    stream = {m: json.loads(_run([exe, "stream", str(weight_bytes(mod))]))["bytes_per_ns"] for m, mod in models.items()}
    return Floors(float(peak["macs_per_ns"]), int(peak["lanes"]), stream)


def floor_us(module: nn.Module, floors: Floors, model: str) -> tuple[float, float]:
    """(compute floor, weight-streaming floor) of one inference, in µs."""
    return macs(module) / floors.macs_per_ns / 1e3, weight_bytes(module) / floors.stream_bytes_per_ns[model] / 1e3
