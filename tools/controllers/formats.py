"""Controllers trained elsewhere: TorchScript, torch.export, state dict + factory, ONNX, stable-baselines3.

Every foreign file goes through one import path, :func:`tools.controllers.graph_import.to_graph`: the
file becomes a canonical ``torch.fx.GraphModule`` computing the action (traced from the forward pass,
so dead heads drop out by the graph, functional ops such as ``2 * tanh`` are kept, LayerNorm, residual
sums and concatenations are followed). That GraphModule is the :class:`Controller`'s module: what prune/
traces, what is exported to ONNX and TVM, and what the device runs. The native controller file
(``tools.controllers.native``) is read as before. ONNX goes through ``onnx2torch`` (after ``onnxsim``):
a side-by-side comparison with this package's former own ONNX reader (Gemm/MatMul/activations only)
showed onnx2torch reads every zoo family the own reader refused (Mul, LayerNormalization, Concat,
Slice, Min/Max) with the same parity on the MLPs both read, so the own reader was deleted.

The contract (:class:`ControllerSpec`: sizes and bounds) comes from the gymnasium env the file is for
(``--env``, default Pendulum-v1; for a pruned ``.pt2`` written by ``prune``, the env its ``.widths.json``
records). Around the graph:

- raw policies (TorchScript, torch.export, factory, ONNX) act in env units: the graph ends with a clip to
  the action box (``torch.minimum``/``torch.maximum``), as gymnasium clips; an output found outside the
  box on sampled observations is refused unless ``clip_actions`` (``--clip-actions``) says the clip is
  intended. SB3 zips carry their own map to the box (tanh rescaled, or the clip ``predict`` applies).
- observation statistics (``--obs-norm FILE``: .npz/.json/VecNormalize .pkl) become the graph's first
  ops, ``clamp((x - mean) / sqrt(var + eps))``; for an SB3 zip a ``vecnormalize.pkl`` where SB3 users
  and rl-baselines3-zoo keep it is used without asking (``find_vecnormalize``), and an on-policy zip
  (PPO, A2C: the algorithms VecNormalize is used with) without statistics carries a note saying that it
  runs on raw observations and how to pass them.

So the normaliser and the action bounds travel into ONNX, TVM and the Cortex-M C: the device takes raw
observations and returns actions in the env's bounds, as the host does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from export import ControllerSpec
from tools.controllers.graph_import import to_graph
from tools.controllers.graph_ops import append_clip, clamps_as_min_max, prepend_normaliser
from tools.controllers.native import FORMAT, Controller
from tools.controllers.obs_norm import ObsNorm, find_vecnormalize, read_obs_norm_file, read_vecnormalize_pkl
from tools.controllers.sb3_zip import read_sb3_zip
from tools.controllers.source import FORMATS
from tools.errors import ControllerError

DEFAULT_ENV = "Pendulum-v1"
UNBOUNDED_OBS = 10.0  # an infinite observation bound becomes +-this for the box parity checks sample from
CHECK_SAMPLES = 1000
ON_POLICY = ("PPO", "A2C")  # the SB3 algorithms VecNormalize is used with (rl-baselines3-zoo's normalize: true)


# ---------------------------------------------------------------- detection


def detect_format(path: Path) -> str:
    """Which of FORMATS a file is, from its suffix and contents (zip members, ONNX protobuf)."""
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        base = {n.split("/", 1)[-1] for n in names}
        if "policy.pth" in names and "data" in names:
            return "sb3"
        if "archive_format" in base or "models/model.json" in base or path.suffix.lower() == ".pt2":
            return "torch-export"
        if any(n.split("/", 1)[-1].startswith("code/") for n in names) or "constants.pkl" in base:
            return "torchscript"
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - load_controller reports the unpickling error itself
            return "controller"
        if (
            isinstance(payload, dict)
            and payload.get("format") != FORMAT
            and payload
            and all(isinstance(v, torch.Tensor) for v in payload.values())
        ):
            return "state-dict"
        return "controller"
    try:
        import onnx

        onnx.load(str(path), load_external_data=False)
        return "onnx"
    except Exception:  # noqa: BLE001 - not protobuf: let the native loader say what is wrong
        return "controller"


def check_whole_zip(path: Path) -> None:
    """Refuse a zip archive cut short (an SB3 zip, .pt2, TorchScript and torch.save files are all zips)."""
    with path.open("rb") as f:
        head = f.read(30 + 1024)
    if head[:4] != b"PK\x03\x04":
        return
    first = head[30 : 30 + int.from_bytes(head[26:28], "little")].decode("utf-8", "replace")
    try:  # the central directory sits at the end; a cut file has none, or only that of a zip stored inside it
        with zipfile.ZipFile(path) as z:
            whole = first in z.namelist()
    except (zipfile.BadZipFile, OSError):
        whole = False
    if not whole:
        raise ControllerError(
            f"{path}: not a controller file that can be read: a zip archive without its end (truncated or corrupt: "
            f"copied or downloaded only in part?), {path.stat().st_size} bytes"
        )


# ---------------------------------------------------------------- the env's contract


def env_spaces(env_id: str) -> tuple[Any, Any]:
    """A gymnasium env's (observation_space, action_space); an env that cannot be made is a ControllerError."""
    import gymnasium as gym

    try:
        env = gym.make(env_id)
    except Exception as e:  # noqa: BLE001 - gymnasium raises several types for unknown ids / missing extras
        raise ControllerError(
            f"--env {env_id}: cannot make it ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from e
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def spec_from_env(env_id: str) -> ControllerSpec:
    """Observation/action sizes and bounds of a gymnasium env with flat Box spaces."""
    import gymnasium as gym

    obs, act = env_spaces(env_id)
    for what, space in (("observation", obs), ("action", act)):
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ControllerError(
                f"--env {env_id}: {what} space {space} is not a flat Box; only Box observations and actions are supported"
            )
    assert isinstance(obs, gym.spaces.Box) and isinstance(act, gym.spaces.Box)  # checked above; tells the type checker
    if not np.all(np.isfinite(act.low)) or not np.all(np.isfinite(act.high)):
        raise ControllerError(
            f"--env {env_id}: action space {act} is unbounded; a controller needs finite action bounds"
        )
    obs_low = np.where(np.isfinite(obs.low), obs.low, -UNBOUNDED_OBS)
    obs_high = np.where(np.isfinite(obs.high), obs.high, UNBOUNDED_OBS)
    return ControllerSpec(
        obs_dim=int(obs.shape[0]),
        act_dim=int(act.shape[0]),
        obs_low=tuple(float(v) for v in obs_low),
        obs_high=tuple(float(v) for v in obs_high),
        act_low=tuple(float(v) for v in act.low),
        act_high=tuple(float(v) for v in act.high),
        env_id=env_id,
        obs_unbounded=tuple(int(i) for i in np.flatnonzero(~(np.isfinite(obs.low) & np.isfinite(obs.high)))),
    )


# ---------------------------------------------------------------- bounds


def check_bounds(raw: torch.Tensor, spec: ControllerSpec, where: Path) -> None:
    """Refuse a raw policy whose actions leave the env's box (they would be clipped, silently changing it)."""
    low, high = torch.tensor(spec.act_low), torch.tensor(spec.act_high)
    over = torch.clamp(raw - high, min=0).max().item()
    under = torch.clamp(low - raw, min=0).max().item()
    if over > 0 or under > 0:
        lo, hi = raw.min().item(), raw.max().item()
        raise ControllerError(
            f"{where}: actions out of bounds: on {raw.shape[0]} observations from the observation box "
            f"the model outputs [{lo:.3g}, {hi:.3g}], env {spec.env_id} takes "
            f"[{', '.join(f'{v:g}' for v in spec.act_low)}]..[{', '.join(f'{v:g}' for v in spec.act_high)}]; "
            "pass --clip-actions to clip them to the bounds (host and device alike), or --env with "
            "the env it was trained on"
        )


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library's logger (and its children) for the duration."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


# ---------------------------------------------------------------- observation statistics


@dataclass
class ObsNormChoice:
    """Which observation statistics a foreign controller runs with, and what the user must be told."""

    norm: ObsNorm | None
    record: (
        dict | None
    )  # JSON: {"source": file, "how": "--obs-norm" | "found beside the zip", "sha256"}; None: raw observations
    notes: list[str] = field(default_factory=list)


def obs_norm_record(path: Path, how: str) -> dict:
    """The statistics file as the manifest's source record names it: path, how it was chosen, sha256 of its bytes."""
    return {"source": str(path), "how": how, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}


def choose_obs_norm(path: Path, fmt: str, env_id: str, explicit: Path | None, algorithm: str | None) -> ObsNormChoice:
    """``--obs-norm FILE`` if given; for an SB3 zip a ``vecnormalize.pkl`` kept beside it; else none (with a note for PPO/A2C)."""
    if explicit is not None:
        return ObsNormChoice(read_obs_norm_file(Path(explicit)), obs_norm_record(Path(explicit), "--obs-norm"))
    if fmt != "sb3":
        return ObsNormChoice(None, None)
    found = find_vecnormalize(path, env_id)
    if found is not None:
        stats = read_vecnormalize_pkl(found)
        if stats is not None:
            return ObsNormChoice(stats, obs_norm_record(found, "found beside the zip"))
        return ObsNormChoice(
            None,
            None,
            [f"{found}: VecNormalize normalised rewards only (norm_obs False); the policy runs on raw observations"],
        )
    config = zoo_config_says_normalize(path, env_id)
    if config is not None:
        return ObsNormChoice(
            None,
            None,
            [
                f"{path.name}: {config} says it was trained with VecNormalize (normalize), but no statistics were found "
                "beside the zip (vecnormalize.pkl); the policy runs on raw observations. Pass --obs-norm FILE "
                "(its vecnormalize.pkl, or an .npz/.json with mean, var)"
            ],
        )
    if algorithm in ON_POLICY:
        return ObsNormChoice(
            None,
            None,
            [
                f"{path.name}: no VecNormalize statistics found beside it (vecnormalize.pkl); the {algorithm} policy runs on "
                "raw observations. If it was trained with VecNormalize, pass --obs-norm FILE (its vecnormalize.pkl, "
                "or an .npz/.json with mean, var)"
            ],
        )
    return ObsNormChoice(None, None)


def zoo_config_says_normalize(zip_path: Path, env_id: str) -> Path | None:
    """The rl-baselines3-zoo ``config.yml`` of the run (``<run>/<env>/config.yml``) if it sets ``normalize``; else None.

    The zoo writes the hyperparameters as YAML pairs (``- - normalize`` then ``- true`` or a dict of
    VecNormalize arguments); the text is searched, nothing is loaded.
    """
    folder = zip_path.parent
    for candidate in (folder / env_id / "config.yml", folder / zip_path.stem / "config.yml"):
        if not candidate.is_file():
            continue
        try:
            text = candidate.read_text(errors="replace")
        except OSError:
            continue
        match = re.search(r"-\s*-?\s*normalize\s*\n\s*-\s*(\S+)", text)
        if match and match.group(1).strip("'\"").lower() not in ("false", "null", "none"):
            return candidate
    return None


def _sb3_algorithm(path: Path) -> str | None:
    """The algorithm an SB3 zip's readable ``data`` names (no unpickling); None if it cannot be told."""
    try:
        return read_sb3_zip(path).algorithm
    except ControllerError:
        return None


# ---------------------------------------------------------------- the env a file is for


def sidecar_env(path: Path) -> str | None:
    """The env a pruned ``.pt2`` was pruned on, from the ``.widths.json`` prune writes beside it; None if none."""
    widths = path.with_name(path.stem + ".widths.json")  # prune.sidecar_paths: <stem>.pt2 beside <stem>.widths.json
    if not widths.is_file():
        return None
    try:
        env = json.loads(widths.read_text()).get("summary", {}).get("env_id")
    except (OSError, ValueError, AttributeError):
        return None
    return env if isinstance(env, str) else None


# ---------------------------------------------------------------- the controller


def graph_architecture(gm: fx.GraphModule, fmt: str) -> dict:
    """The architecture record of a foreign controller's graph (what run, export and the manifest show)."""
    linears = [m for m in gm.modules() if isinstance(m, nn.Linear)]
    layer_norms = sum(isinstance(m, nn.LayerNorm) for m in gm.modules())
    ops = sorted({getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes if n.op == "call_function"})
    arch: dict = {
        "kind": "graph",
        "source_format": fmt,
        "hidden": [m.out_features for m in linears[:-1]],
        "linear_layers": len(linears),
        "layer_norms": layer_norms,
        "functions": ops,
    }
    return arch


def load_foreign(
    path: Path,
    fmt: str,
    env: str | None = None,
    factory: str | None = None,
    clip_actions: bool = False,
    seed: int = 0,
    obs_norm: Path | None = None,
) -> Controller:
    """Load a controller trained elsewhere as its canonical GraphModule (``to_graph``), checked against the original."""
    if fmt not in FORMATS or fmt == "controller":
        raise ControllerError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    env_id = env or (sidecar_env(path) if fmt == "torch-export" else None) or DEFAULT_ENV
    spec = spec_from_env(env_id)
    spaces = env_spaces(env_id) if fmt == "sb3" else None
    choice = choose_obs_norm(
        path, fmt, env_id, obs_norm, _sb3_algorithm(path) if fmt == "sb3" and obs_norm is None else None
    )
    obs = torch.as_tensor(spec.sample_observations(CHECK_SAMPLES, seed))
    hint = f"env {env_id} gives {spec.obs_dim}; pass --env with the env it was trained on"
    with _quiet("torch.export"), _quiet("torch._export"):  # torch logs tracebacks before raising; the error says it all
        gm = to_graph(
            path,
            fmt,
            obs_dim=spec.obs_dim,
            factory=factory,
            obs_norm=choice.norm if fmt == "sb3" else None,
            check_obs=obs,
            env_spaces=spaces,
            obs_dim_hint=hint,
        )
    if fmt != "sb3" and choice.norm is not None:
        if choice.norm.mean.shape != (spec.obs_dim,):
            raise ControllerError(
                f"{choice.norm.source}: mean has shape {choice.norm.mean.shape}, the controller takes "
                f"{spec.obs_dim} observations"
            )
        norm_module = choice.norm.as_module()
        gm = prepend_normaliser(gm, norm_module.mean, norm_module.std, norm_module.clip_obs)
    with torch.no_grad():
        raw = gm(obs)
    if raw.dim() != 2 or raw.shape[-1] != spec.act_dim:
        raise ControllerError(
            f"{path}: the model outputs {raw.shape[-1] if raw.dim() else 1} actions, env {env_id} takes "
            f"{spec.act_dim}; pass --env with the env it was trained on"
        )
    if fmt != "sb3":
        if not clip_actions:
            check_bounds(raw, spec, path)
        gm = append_clip(gm, torch.tensor(spec.act_low), torch.tensor(spec.act_high))
    gm = clamps_as_min_max(gm)  # the same function in the ops every target runs (see its docstring)
    arch = graph_architecture(gm, fmt)
    if fmt == "sb3" or obs_norm is not None:
        arch["obs_norm"] = choice.record
    if "sb3" in gm.meta:
        arch["sb3"] = {
            k: gm.meta["sb3"][k] for k in ("algorithm", "activation", "net_arch", "output", "deterministic_action")
        }
    notes = list(choice.notes) + list(gm.meta.get("sb3", {}).get("notes", []))
    if notes:
        arch["notes"] = notes
    return Controller(gm, spec, arch, path, hashlib.sha256(path.read_bytes()).hexdigest())
