"""Observation normalisation statistics (SB3 ``VecNormalize``), read without running anything from the file.

A policy trained inside ``VecNormalize`` sees ``clip((obs - mean) / sqrt(var + epsilon), -clip_obs, clip_obs)``,
never the raw observation; run on raw observations it is a different, silently wrong controller. The
statistics come from a ``vecnormalize.pkl`` (``VecNormalize.save``) or from an explicit ``.npz``/``.json``
with keys ``mean``, ``var`` and optional ``clip_obs``, ``epsilon``.

The pickle is read by an allow-list unpickler: numpy arrays, dtypes and scalars are rebuilt by numpy's
own reconstructors; the SB3 classes (``VecNormalize``, ``RunningMeanStd``), gymnasium spaces and numpy's
random-generator state the pickle references are replaced by inert stand-ins that only hold the
attributes pickle gives them. Any other global (``os.system``, ``builtins.open``, ``builtins.eval``, ...)
is refused before it is called, naming the file and the global.
"""

from __future__ import annotations

import json
import pickle
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tools.errors import ControllerError

VECNORMALIZE_NAMES = ("vecnormalize.pkl", "vec_normalize.pkl")  # rl-baselines3-zoo / SB3 docs; Hugging Face SB3 repos
CLIP_OBS = 10.0  # VecNormalize's defaults
EPSILON = 1e-8

# Globals rebuilt for real: they only construct arrays, dtypes and scalars from the bytes given.
_NUMPY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_PLAIN_GLOBALS = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("collections", "OrderedDict"): OrderedDict,
}
# Globals that become inert stand-ins: the classes whose attributes we read, and state we ignore.
_INERT_CLASSES = {
    ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"),
    ("stable_baselines3.common.running_mean_std", "RunningMeanStd"),
}
_INERT_PREFIXES = (
    "gymnasium.spaces.",
    "gym.spaces.",  # the spaces VecNormalize keeps
    "numpy.random.",  # a space's generator state (_pickle.__generator_ctor, PCG64, SeedSequence, ...)
)


class _Inert:
    """Stand-in for a referenced class or constructor: keeps what pickle hands it, runs nothing."""

    qualname = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    @property
    def fields(self) -> dict[str, Any]:
        """The attributes pickle set (empty if it set none; NEWOBJ skips __init__)."""
        return self.__dict__.get("_fields", {})

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and all(isinstance(s, dict | None) for s in state):
            state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slot state)
        self.__dict__["_fields"] = dict(state) if isinstance(state, dict) else {"state": state}


class _AllowListUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; everything else is refused before it can be called."""

    def __init__(self, file: Any, source: Path) -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if (module, name) in _PLAIN_GLOBALS:
            return _PLAIN_GLOBALS[(module, name)]
        if (module, name) in _INERT_CLASSES or module.startswith(_INERT_PREFIXES):
            return type(name, (_Inert,), {"qualname": f"{module}.{name}"})
        raise ControllerError(
            f"{self.source}: refused to unpickle global {module}.{name}: observation statistics "
            "hold only numpy arrays and numbers (pass them as --obs-norm FILE.npz/.json instead)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise ControllerError(f"{self.source}: refused a persistent reference ({pid!r}) in observation statistics")


class ObsNormalize(nn.Module):
    """``clip((x - mean) / sqrt(var + eps), -clip, clip)`` with the statistics as buffers."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: np.ndarray, std: np.ndarray, clip_obs: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).clone())
        self.clip_obs = float(clip_obs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / self.std, -self.clip_obs, self.clip_obs)


@dataclass
class ObsNorm:
    """Running observation statistics as VecNormalize applies them."""

    mean: np.ndarray  # float64, shape (obs_dim,)
    var: np.ndarray  # float64, shape (obs_dim,)
    clip_obs: float = CLIP_OBS
    epsilon: float = EPSILON
    source: str = ""  # the file they came from, for messages

    def std(self) -> np.ndarray:
        """``sqrt(var + epsilon)``, in float64 as VecNormalize computes it."""
        return np.sqrt(np.asarray(self.var, dtype=np.float64) + self.epsilon)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """What ``VecNormalize.normalize_obs`` returns for a batch of observations (float32)."""
        out = np.clip((obs - self.mean) / self.std(), -self.clip_obs, self.clip_obs)
        return out.astype(np.float32)

    def as_module(self) -> ObsNormalize:
        """A traceable, exportable module applying the statistics to raw observations."""
        return ObsNormalize(self.mean, self.std(), self.clip_obs)


def read_vecnormalize_pkl(path: Path) -> ObsNorm | None:
    """Statistics from ``VecNormalize.save``; None when it normalised rewards only (``norm_obs`` False)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            root = _AllowListUnpickler(f, path).load()
    except ControllerError:
        raise
    except OSError as e:
        raise ControllerError(f"{path}: cannot read ({e})") from e
    except Exception as e:  # noqa: BLE001 - a truncated or foreign pickle raises many types
        raise ControllerError(f"{path}: not a VecNormalize pickle ({type(e).__name__}: {e})") from e
    if not isinstance(root, _Inert) or not root.qualname.endswith(".VecNormalize"):
        found = root.qualname if isinstance(root, _Inert) else type(root).__name__
        raise ControllerError(f"{path}: holds {found}, not a stable-baselines3 VecNormalize")
    fields = root.fields
    if not fields.get("norm_obs", True):
        return None
    rms = fields.get("obs_rms")
    if isinstance(rms, dict):
        raise ControllerError(
            f"{path}: statistics per Dict observation key ({', '.join(map(str, rms))}); "
            "only flat Box observations are supported"
        )
    if not isinstance(rms, _Inert) or "mean" not in rms.fields or "var" not in rms.fields:
        raise ControllerError(f"{path}: VecNormalize has no obs_rms with mean and var")
    return _validated(
        path, rms.fields["mean"], rms.fields["var"], fields.get("clip_obs", CLIP_OBS), fields.get("epsilon", EPSILON)
    )


def read_obs_norm_file(path: Path) -> ObsNorm:
    """Statistics from an ``.npz`` or ``.json`` with keys mean, var and optional clip_obs, epsilon."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                values: dict[str, Any] = {k: npz[k] for k in npz.files}
        elif suffix == ".json":
            values = json.loads(path.read_text())
            if not isinstance(values, dict):
                raise ControllerError(f"{path}: expected a JSON object with keys mean, var")
        elif suffix == ".pkl":
            norm = read_vecnormalize_pkl(path)
            if norm is None:
                raise ControllerError(f"{path}: VecNormalize with norm_obs False holds no observation statistics")
            return norm
        else:
            raise ControllerError(f"{path}: observation statistics must be .npz, .json or a VecNormalize .pkl")
    except ControllerError:
        raise
    except (OSError, ValueError) as e:  # missing file, bad zip/npz, bad JSON, pickled npz arrays
        raise ControllerError(f"{path}: cannot read observation statistics ({e})") from e
    missing = [k for k in ("mean", "var") if k not in values]
    if missing:
        raise ControllerError(
            f"{path}: missing key(s) {', '.join(missing)}; expected mean, var and optionally clip_obs, epsilon"
        )
    return _validated(
        path, values["mean"], values["var"], values.get("clip_obs", CLIP_OBS), values.get("epsilon", EPSILON)
    )


def _validated(path: Path, mean: Any, var: Any, clip_obs: Any, epsilon: Any) -> ObsNorm:
    """ObsNorm after checking shapes (flat, equal), finiteness, var >= 0, clip_obs > 0, epsilon >= 0."""
    try:
        mean_a = np.asarray(mean, dtype=np.float64)
        var_a = np.asarray(var, dtype=np.float64)
        clip_f = float(np.asarray(clip_obs, dtype=np.float64))
        eps_f = float(np.asarray(epsilon, dtype=np.float64))
    except (TypeError, ValueError) as e:
        raise ControllerError(f"{path}: mean, var, clip_obs and epsilon must be numbers ({e})") from e
    if mean_a.ndim != 1 or mean_a.size == 0 or var_a.shape != mean_a.shape:
        raise ControllerError(f"{path}: mean {mean_a.shape} and var {var_a.shape} must be flat and of one length")
    if not (np.all(np.isfinite(mean_a)) and np.all(np.isfinite(var_a))):
        raise ControllerError(f"{path}: mean and var must be finite")
    if np.any(var_a < 0):
        raise ControllerError(f"{path}: var has negative entries ({var_a.min():g})")
    if not (np.isfinite(clip_f) and clip_f > 0):
        raise ControllerError(f"{path}: clip_obs must be a positive number, got {clip_f}")
    if not (np.isfinite(eps_f) and eps_f >= 0):
        raise ControllerError(f"{path}: epsilon must be a non-negative number, got {eps_f}")
    if np.any(var_a + eps_f <= 0):
        raise ControllerError(f"{path}: var + epsilon is 0 for some observation (division by zero)")
    return ObsNorm(mean=mean_a, var=var_a, clip_obs=clip_f, epsilon=eps_f, source=str(path))


def find_vecnormalize(zip_path: Path, env_id: str | None = None) -> Path | None:
    """Statistics kept where SB3 users and rl-baselines3-zoo keep them, beside a model zip; None if none."""
    zip_path = Path(zip_path)
    folder = zip_path.parent
    candidates = [folder / name for name in VECNORMALIZE_NAMES]
    candidates.append(folder / zip_path.stem / "vecnormalize.pkl")  # zoo: <run>/<env>.zip, <run>/<env>/vecnormalize.pkl
    if env_id:
        candidates.append(folder / env_id / "vecnormalize.pkl")  # zoo: <run>/best_model.zip, <run>/<env>/...
    checkpoint = re.fullmatch(r"(.+)_(\d+_steps)", zip_path.stem)
    if (
        checkpoint
    ):  # SB3 CheckpointCallback(save_vecnormalize=True): <prefix>_<n>_steps.zip, <prefix>_vecnormalize_<n>_steps.pkl
        candidates.append(folder / f"{checkpoint.group(1)}_vecnormalize_{checkpoint.group(2)}.pkl")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if env_id:  # the env is known: its own zoo folder was tried above; another folder's statistics are not guessed
        return None
    nested = sorted(folder.glob("*/vecnormalize.pkl"))
    return nested[0] if len(nested) == 1 else None
