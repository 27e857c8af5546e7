"""TD-MPC planning with the planner step on the device, in lockstep with the host's planner (``planning_hil``).

Every control step the host encodes the observation (z = h(obs)), draws the noise from the same
seeded generator as :class:`tools.usecases.tdmpc.agent.Planner`, and sends each episode's packed
input [z, mean, std, noise] to the device (the firmware stub running the packed planner-step bundle;
with the agent's 32 samples it is a multi-part request, PROTOCOL.md), which returns [new mean, new
std]. The host's planner plays the same gymnasium episodes with torch; both returns are reported
per episode.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from export import StubSession
from tools.usecases.tdmpc.agent import MAX_TORQUE, Planner, PlannerConfig, TDMPCAgent
from tools.usecases.tdmpc.evaluate import rollout_gym_lockstep

FIDELITY = 1e-3  # largest |device return - host return| per episode accepted (as tools/pipeline/hil.py)


class DevicePlanner:
    """:class:`Planner`'s receding-horizon loop with every MPPI iteration run by the device's packed planner step."""

    def __init__(self, agent: TDMPCAgent, cfg: PlannerConfig, session: StubSession, seed: int = 0) -> None:
        self.agent, self.cfg, self.session = agent.eval(), cfg.check(), session
        self.generator = torch.Generator().manual_seed(seed)
        self.mean: torch.Tensor | None = None
        self.steps = 0  # planner steps the device ran

    @torch.no_grad()
    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Torques (B, A) float32 for observations (B, obs_dim), noise drawn as the host's Planner draws it."""
        cfg, agent = self.cfg, self.agent
        z = agent.encoder(torch.as_tensor(np.asarray(obs), dtype=torch.float32).reshape(-1, agent.cfg.obs_dim))
        B, A, H = len(z), agent.cfg.act_dim, cfg.horizon
        if self.mean is None or len(self.mean) != B:
            mean = torch.zeros(B, H, A)
        else:
            mean = torch.cat([self.mean[:, 1:], self.mean[:, -1:]], dim=1)
        std = torch.full((B, H, A), cfg.max_std)
        for _ in range(cfg.iterations):
            noise = torch.randn(B, cfg.samples, H, A, generator=self.generator)
            packed = torch.cat([z, mean.flatten(1), std.flatten(1), noise.flatten(1)], dim=1).numpy()
            out, _ = self.session.infer_batch(packed.astype(np.float32))
            self.steps += B
            mean = torch.from_numpy(out[:, : H * A].copy()).reshape(B, H, A)
            std = torch.from_numpy(out[:, H * A :].copy()).reshape(B, H, A)
        self.mean = mean
        return (MAX_TORQUE * mean[:, 0]).numpy().astype(np.float32)


@dataclass
class PlanningHil:
    """Lockstep planning episodes on the device and on the host: returns per episode and their largest difference."""

    target: str
    samples: int
    episodes: int
    start: int
    seed: int
    device_returns: list[float]
    host_returns: list[float]
    max_return_diff: float
    device_steps: int

    @property
    def ok(self) -> bool:
        """Every episode's device return within FIDELITY of the host's."""
        return self.max_return_diff <= FIDELITY

    def to_dict(self) -> dict:
        """The run as JSON-ready data."""
        return {**asdict(self), "fidelity": FIDELITY, "ok": self.ok}


def planning_hil(
    agent: TDMPCAgent,
    cfg: PlannerConfig,
    bundle_dir: Path,
    target: str,
    episodes: int = 2,
    start: int = 0,
    seed: int = 0,
    runner: str | None = None,
) -> PlanningHil:
    """Plan gymnasium Pendulum-v1 episodes start.. with the packed planner-step bundle on ``target`` and with torch."""
    seeds = list(range(start, start + episodes))
    with StubSession(Path(bundle_dir), target, runner=runner) as session:
        if session.obs_dim != sum(_packed_sizes(agent, cfg)):
            raise ValueError(
                f"{bundle_dir}: the device's planner step takes {session.obs_dim} floats, "
                f"the agent's planner ({cfg.samples} samples) packs {sum(_packed_sizes(agent, cfg))}"
            )
        device = DevicePlanner(agent, cfg, session, seed)
        device_returns = rollout_gym_lockstep(device, seeds)
    host_returns = rollout_gym_lockstep(Planner(agent, cfg, seed=seed), seeds)
    diff = float(np.max(np.abs(device_returns - host_returns)))
    return PlanningHil(
        target, cfg.samples, episodes, start, seed, device_returns.tolist(), host_returns.tolist(), diff, device.steps
    )


def _packed_sizes(agent: TDMPCAgent, cfg: PlannerConfig) -> tuple[int, ...]:
    HA = cfg.horizon * agent.cfg.act_dim
    return agent.cfg.latent, HA, HA, cfg.samples * HA
