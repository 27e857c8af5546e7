"""What a controller consumes and produces: shapes, bounds and the task it was trained for."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class ControllerSpec:
    """Input/output contract of a controller, carried from the controller file into every bundle."""

    obs_dim: int
    act_dim: int
    obs_low: tuple[float, ...]
    obs_high: tuple[float, ...]
    act_low: tuple[float, ...]
    act_high: tuple[float, ...]
    env_id: str = "Pendulum-v1"
    input_name: str = "obs"
    output_name: str = "action"
    extra: dict = field(default_factory=dict)
    obs_unbounded: tuple[int, ...] = ()  # observation dimensions whose env bound is infinite (obs_low/high: a stand-in)

    def __post_init__(self) -> None:
        for name, values, dim in (
            ("obs_low", self.obs_low, self.obs_dim),
            ("obs_high", self.obs_high, self.obs_dim),
            ("act_low", self.act_low, self.act_dim),
            ("act_high", self.act_high, self.act_dim),
        ):
            if len(values) != dim:
                raise ValueError(f"ControllerSpec.{name} has {len(values)} entries, expected {dim}")
        if any(lo > hi for lo, hi in zip(self.obs_low, self.obs_high)) or any(
            lo > hi for lo, hi in zip(self.act_low, self.act_high)
        ):
            raise ValueError("ControllerSpec bounds have low > high")
        if any(not 0 <= i < self.obs_dim for i in self.obs_unbounded):
            raise ValueError(
                f"ControllerSpec.obs_unbounded {list(self.obs_unbounded)} names a dimension outside 0..{self.obs_dim - 1}"
            )

    def sample_observations(self, n: int, seed: int) -> np.ndarray:
        """Draw n float32 observations uniformly from the observation box (seeded; stand-in bounds where unbounded)."""
        rng = np.random.default_rng(seed)
        lo, hi = np.array(self.obs_low), np.array(self.obs_high)
        return rng.uniform(lo, hi, size=(n, self.obs_dim)).astype(np.float32)

    def to_dict(self) -> dict:
        """The spec as JSON-ready data (the manifest's ``spec``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ControllerSpec:
        """The spec from its ``to_dict`` form."""
        try:
            return cls(
                obs_dim=int(d["obs_dim"]),
                act_dim=int(d["act_dim"]),
                obs_low=tuple(float(v) for v in d["obs_low"]),
                obs_high=tuple(float(v) for v in d["obs_high"]),
                act_low=tuple(float(v) for v in d["act_low"]),
                act_high=tuple(float(v) for v in d["act_high"]),
                env_id=str(d.get("env_id", "Pendulum-v1")),
                input_name=str(d.get("input_name", "obs")),
                output_name=str(d.get("output_name", "action")),
                extra=dict(d.get("extra", {})),
                obs_unbounded=tuple(int(i) for i in d.get("obs_unbounded", ())),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"controller spec is malformed: {e}") from e
