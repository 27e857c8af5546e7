"""A small TD-MPC agent for Pendulum-v1 (Hansen, Wang, Su 2022) and its MPPI planner.

The agent is one ``nn.Module`` with the five components of TD-MPC as top-level submodules, so
``prune.find_groups`` tags every pruning group with its component:

| component  | maps                        | layers (as in the original)                    |
|------------|-----------------------------|------------------------------------------------|
| encoder h  | obs (3) -> z (latent)       | Linear-ELU-Linear-ELU-Linear                   |
| dynamics d | concat(z, a) -> z'          | Linear-ELU-Linear-ELU-Linear                   |
| reward R   | concat(z, a) -> r           | Linear-ELU-Linear-ELU-Linear                   |
| policy pi  | z -> a in [-1, 1]           | Linear-ELU-Linear-ELU-Linear-tanh              |
| q (twin)   | concat(z, a) -> Q1, Q2      | Linear-LayerNorm-Tanh-Linear-ELU-Linear, twice |

Actions inside the agent are normalised to [-1, 1]; the plant's torque is ``MAX_TORQUE * a``.
``forward(obs, a)`` touches every component once and returns z itself, so tracing protects the
latent width (every component reads it and the dynamics write it back: it is one index space the
tracer cannot see as a loop). The planner (:func:`plan`) stays outside the module: it is a function
of the agent, so a pruned agent plans with the same code.

MPPI (:func:`mppi_iteration`, one iteration; :class:`Planner`, the receding-horizon loop batched
over episodes): sample action sequences around a Gaussian (mean, std) plus one policy-guided
sequence, roll them through d and R over the horizon, bootstrap with ``gamma^H min(Q1, Q2)(z_H,
pi(z_H))``, re-fit mean and std to the softmax-weighted elites. The elite set is a mask (value at
least the k-th largest), not a gather, so the same function exports to ONNX. Noise comes from a
seeded ``torch.Generator``: a planner's actions are a function of (weights, seed, observations).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tools.errors import ControllerError

FORMAT = "prune-and-export.tdmpc"
VERSION = 1
MAX_TORQUE = 2.0
COMPONENTS = ("encoder", "dynamics", "reward", "policy", "q")


def mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    """The TD-MPC MLP: two ELU hidden layers and a linear head."""
    return nn.Sequential(nn.Linear(inp, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, out))


def q_mlp(inp: int, hidden: int) -> nn.Sequential:
    """The TD-MPC Q head: LayerNorm and Tanh after the first layer, then ELU."""
    return nn.Sequential(
        nn.Linear(inp, hidden),
        nn.LayerNorm(hidden),
        nn.Tanh(),
        nn.Linear(hidden, hidden),
        nn.ELU(),
        nn.Linear(hidden, 1),
    )


class Policy(nn.Module):
    """pi(z): a TD-MPC MLP squashed by tanh to [-1, 1]."""

    def __init__(self, latent: int, hidden: int, act_dim: int) -> None:
        super().__init__()
        self.net = mlp(latent, hidden, act_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z))


class TwinQ(nn.Module):
    """Two Q heads on concat(z, a); planning uses their minimum."""

    def __init__(self, latent: int, hidden: int, act_dim: int) -> None:
        super().__init__()
        self.q1, self.q2 = q_mlp(latent + act_dim, hidden), q_mlp(latent + act_dim, hidden)

    def forward(self, za: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.q1(za), self.q2(za)], dim=-1)


@dataclass(frozen=True)
class AgentConfig:
    """Sizes of the agent (the shipped one: latent 32, hidden 64)."""

    obs_dim: int = 3
    act_dim: int = 1
    latent: int = 32
    hidden: int = 64


class TDMPCAgent(nn.Module):
    """Encoder, latent dynamics, reward, policy and twin Q of TD-MPC as top-level submodules."""

    def __init__(self, cfg: AgentConfig = AgentConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        L, H, A = cfg.latent, cfg.hidden, cfg.act_dim
        self.encoder = mlp(cfg.obs_dim, H, L)
        self.dynamics = mlp(L + A, H, L)
        self.reward = mlp(L + A, H, 1)
        self.policy = Policy(L, H, A)
        self.q = TwinQ(L, H, A)

    def forward(self, obs: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every component once (for tracing and tests): z, d(z, a), R(z, a), pi(z), Q(z, a)."""
        z = self.encoder(obs)
        za = torch.cat([z, a], dim=-1)
        return z, self.dynamics(za), self.reward(za), self.policy(z), self.q(za)

    def next(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent step: (d(z, a), R(z, a))."""
        za = torch.cat([z, a], dim=-1)
        return self.dynamics(za), self.reward(za)

    def q_min(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """min(Q1, Q2)(z, a) of shape (..., 1)."""
        return self.q(torch.cat([z, a], dim=-1)).min(dim=-1, keepdim=True).values


def example_inputs(cfg: AgentConfig = AgentConfig(), n: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(obs, a) to trace the agent with: observations from the Pendulum-v1 box, actions in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    th = (torch.rand(n, generator=g) * 2 - 1) * np.pi
    obs = torch.stack([th.cos(), th.sin(), (torch.rand(n, generator=g) * 2 - 1) * 8], dim=1)
    return obs, torch.rand(n, cfg.act_dim, generator=g) * 2 - 1


# -- planning --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannerConfig:
    """MPPI parameters (the defaults are what the shipped agent was judged with)."""

    horizon: int = 3
    """planning horizon (latent steps)"""
    samples: int = 32
    """Gaussian action sequences per iteration (one policy-guided sequence is added)"""
    iterations: int = 2
    """MPPI iterations per control step"""
    elites: int = 8
    """sequences the mean and std are re-fitted to"""
    temperature: float = 0.5
    """softmax temperature on elite values (per unit of return)"""
    gamma: float = 0.99
    """discount of the planned return (the one Q was trained with)"""
    min_std: float = 0.05
    """std floor of the sampling distribution"""
    max_std: float = 1.0
    """std each control step starts from"""

    def check(self) -> PlannerConfig:
        for name in ("horizon", "samples", "iterations", "elites"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"planner {name} must be >= 1, got {getattr(self, name)}")
        if self.elites > self.samples + 1:
            raise ValueError(f"planner elites ({self.elites}) exceed samples + 1 ({self.samples + 1})")
        if not 0 < self.min_std <= self.max_std:
            raise ValueError(f"planner needs 0 < min_std <= max_std, got {self.min_std}, {self.max_std}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def policy_sequence(agent: TDMPCAgent, z: torch.Tensor, horizon: int) -> torch.Tensor:
    """(B, horizon, A) actions pi proposes along its own latent rollout from z (B, L)."""
    acts = []
    for _ in range(horizon):
        a = agent.policy(z)
        acts.append(a)
        z, _ = agent.next(z, a)
    return torch.stack(acts, dim=1)


def sequence_value(agent: TDMPCAgent, z: torch.Tensor, actions: torch.Tensor, gamma: float) -> torch.Tensor:
    """Planned return of action sequences: z (B, L), actions (B, N, H, A) -> (B, N)."""
    B, N, H, A = actions.shape
    zs = z.unsqueeze(1).expand(B, N, z.shape[-1]).reshape(B * N, -1)
    acts = actions.reshape(B * N, H, A)
    total = torch.zeros(B * N, 1)
    discount = 1.0
    for t in range(H):
        zs, r = agent.next(
            zs, acts[:, t : t + 1].squeeze(1)
        )  # a slice, not acts[:, t]: ONNX Gather has an int64 index the armv7 stub cannot take
        total = total + discount * r
        discount *= gamma
    total = total + discount * agent.q_min(zs, agent.policy(zs))
    return total.reshape(B, N)


ELITE_TIE = 1e-2  # planned returns (tens to hundreds) closer than this are tied for the elites


def clamp(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """x.clamp(low, high) with the bounds as 1-element tensors: ONNX Max/Min on [1] weights, not Clip, whose
    0-d bounds the runtime-free armv7 stub cannot pass to a kernel (its plan carries ranks 1 to 4)."""
    return torch.minimum(torch.maximum(x, torch.full((1,), low)), torch.full((1,), high))


def mppi_iteration(
    agent: TDMPCAgent, z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, noise: torch.Tensor, cfg: PlannerConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """One MPPI iteration: z (B, L), mean/std (B, H, A), noise (B, S, H, A) -> new (mean, std)."""
    sampled = clamp(mean.unsqueeze(1) + std.unsqueeze(1) * noise, -1.0, 1.0)
    guided = policy_sequence(agent, z, mean.shape[1]).unsqueeze(1)
    actions = torch.cat([guided, sampled], dim=1)  # (B, S + 1, H, A)
    value = sequence_value(agent, z, actions, cfg.gamma)  # (B, S + 1)
    # elite = fewer than `elites` sequences score higher by more than ELITE_TIE: value >= the elites-th
    # largest, with returns closer than ELITE_TIE counted as ties. In float ops only, so the exported
    # graph needs no TopK kernel (TVM lowers it to a call into its full runtime, tvm.contrib.sort.topk,
    # that the device stubs do not carry). The tie band matters: clamped samples often make identical
    # sequences, whose returns torch, onnxruntime and TVM compute a few ulps apart, and a strict
    # comparison then drops one of them from the elites in one runtime and not the other (0.34 apart).
    gap = value.unsqueeze(1) - value.unsqueeze(2) - ELITE_TIE  # (B, i, j): value_j - value_i - tie
    higher = torch.relu(torch.sign(gap)).sum(dim=2)  # (B, N): count of value_j > value_i + tie
    elite = clamp(cfg.elites - higher, 0.0, 1.0)  # counts are whole numbers: 1 when higher < elites, else 0
    best = value.max(dim=1, keepdim=True).values
    weight = torch.exp(cfg.temperature * (value - best)) * elite
    weight = (weight / weight.sum(dim=1, keepdim=True))[:, :, None, None]
    new_mean = (weight * actions).sum(dim=1)
    new_std = (weight * (actions - new_mean.unsqueeze(1)) ** 2).sum(dim=1).sqrt()
    return new_mean, clamp(new_std, cfg.min_std, cfg.max_std)


class Planner:
    """Receding-horizon MPPI over B episodes at once, warm-started from the previous step's shifted mean."""

    def __init__(self, agent: TDMPCAgent, cfg: PlannerConfig = PlannerConfig(), seed: int = 0) -> None:
        self.agent, self.cfg = agent.eval(), cfg.check()
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.mean: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the warm start and restart the noise stream (a new batch of episodes)."""
        self.generator.manual_seed(self.seed)
        self.mean = None

    @torch.no_grad()
    def act_normalised(self, obs: torch.Tensor) -> torch.Tensor:
        """Actions in [-1, 1], (B, A), for observations (B, obs_dim)."""
        cfg, agent = self.cfg, self.agent
        z = agent.encoder(obs)
        B, A = len(obs), agent.cfg.act_dim
        if self.mean is None or len(self.mean) != B:
            mean = torch.zeros(B, cfg.horizon, A)
        else:
            mean = torch.cat([self.mean[:, 1:], self.mean[:, -1:]], dim=1)
        std = torch.full((B, cfg.horizon, A), cfg.max_std)
        for _ in range(cfg.iterations):
            noise = torch.randn(B, cfg.samples, cfg.horizon, A, generator=self.generator)
            mean, std = mppi_iteration(agent, z, mean, std, noise, cfg)
        self.mean = mean
        return mean[:, 0]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Numpy batch policy: torques (B, A) float32 for observations (B, obs_dim)."""
        a = self.act_normalised(
            torch.as_tensor(np.asarray(obs), dtype=torch.float32).reshape(-1, self.agent.cfg.obs_dim)
        )
        return (MAX_TORQUE * a).numpy().astype(np.float32)


# -- the policy path, as a plain controller --------------------------------------------------------


class PolicyPath(nn.Module):
    """obs -> torque through h then pi: the agent without planning, exportable like any controller."""

    def __init__(self, agent: TDMPCAgent) -> None:
        super().__init__()
        self.encoder, self.policy = agent.encoder, agent.policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return MAX_TORQUE * self.policy(self.encoder(obs))


# -- weights file ----------------------------------------------------------------------------------


def default_agent_path() -> Path:
    """The shipped agent (trained by ``python -m tools.usecases.tdmpc.train``)."""
    return Path(str(resources.files("tools") / "assets" / "pendulum_tdmpc.pt"))


def save_agent(path: Path, agent: TDMPCAgent, planner: PlannerConfig, info: dict | None = None) -> None:
    """Write an agent file atomically: plain dict of tensors, numbers and strings (weights_only loadable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": asdict(agent.cfg),
        "planner": planner.to_dict(),
        "info": dict(info or {}),
        "state_dict": {k: v.detach().cpu().clone() for k, v in agent.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


@dataclass
class LoadedAgent:
    """An agent file's contents."""

    agent: TDMPCAgent
    planner: PlannerConfig
    info: dict
    path: Path
    sha256: str


def load_agent(path: str | Path | None = None) -> LoadedAgent:
    """Load an agent file with weights_only=True; any problem raises ControllerError naming the file."""
    path = default_agent_path() if path is None else Path(path)
    if not path.is_file():
        raise ControllerError(f"{path}: no such agent file")
    raw = path.read_bytes()
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - the unpickler raises anything on garbage
        raise ControllerError(
            f"{path}: not an agent file that loads with weights_only=True ({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or payload.get("version") != VERSION:
        raise ControllerError(f"{path}: not a prune-and-export TD-MPC agent (format {FORMAT!r} version {VERSION})")
    try:
        agent = TDMPCAgent(AgentConfig(**payload["config"]))
        agent.load_state_dict(payload["state_dict"])
        planner = PlannerConfig(**payload["planner"]).check()
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise ControllerError(f"{path}: {str(e).splitlines()[0]}") from e
    return LoadedAgent(agent.eval(), planner, dict(payload.get("info", {})), path, hashlib.sha256(raw).hexdigest())
