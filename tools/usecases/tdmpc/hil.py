"""TD-MPC planning with the planner step on the device, in lockstep with the host's planner (``planning_hil``).

Every control step the host encodes the observation (z = h(obs)), draws the noise from the same
seeded generator as :class:`tools.usecases.tdmpc.agent.Planner`, and sends each episode's packed
input [z, mean, std, noise] to the device (the firmware stub running the packed planner-step bundle;
with the agent's 32 samples it is a multi-part request, PROTOCOL.md), which returns [new mean, new
std]. The host's planner plays the same gymnasium episodes with torch; both returns are reported
per episode.

    python -m tools.usecases.tdmpc.hil --targets x86_64,cortex-a72 --episodes 5 --out /tmp/tdmpc_hil.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from export import StubSession
from targets import parse_target_list
from tools.usecases.tdmpc.agent import MAX_TORQUE, Planner, PlannerConfig, TDMPCAgent, load_agent
from tools.usecases.tdmpc.evaluate import rollout_gym_lockstep
from tools.usecases.tdmpc.export import device_planner, export_packed_step

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


def main(argv: list[str] | None = None) -> int:
    """Export the agent's packed planner step for the targets, plan lockstep episodes on each, print and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default=None, help="agent file (default: the shipped agent)")
    parser.add_argument("--targets", default="x86_64,cortex-a72", help="Linux targets, comma-separated")
    parser.add_argument("--episodes", type=int, default=5, help="lockstep episodes per target (seeds start..)")
    parser.add_argument("--start", type=int, default=0, help="first episode seed")
    parser.add_argument("--seed", type=int, default=0, help="seed of the planner noise and of export's parity inputs")
    parser.add_argument("--out", type=Path, default=None, help="write the runs as JSON here")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be >= 1")
    if args.agent is not None and not Path(args.agent).is_file():
        parser.error(f"--agent: no such file {args.agent}")
    try:
        targets = parse_target_list(args.targets)
    except Exception as e:  # noqa: BLE001 - TargetError: name the flag
        parser.error(f"--targets: {e}")
    print(f"seed {args.seed}")
    loaded = load_agent(args.agent)
    agent, cfg = loaded.agent.eval(), device_planner(loaded.agent, loaded.planner)
    runs = []
    with tempfile.TemporaryDirectory(prefix="pae_tdmpc_hil.") as tmp:
        bundle = Path(tmp) / "planner-step"
        export_packed_step(agent, cfg, bundle, tuple(t.name for t in targets), seed=args.seed)
        for t in targets:
            r = planning_hil(agent, cfg, bundle, t.name, args.episodes, args.start, args.seed)
            runs.append(r.to_dict())
            print(
                f"{t.name:12s} {cfg.samples} samples, {args.episodes} episodes: device {np.round(r.device_returns, 4).tolist()} "
                f"host {np.round(r.host_returns, 4).tolist()} max |diff| {r.max_return_diff:.2e} "
                f"({'ok' if r.ok else 'FAILED'}, within {FIDELITY:g})"
            )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_name(args.out.name + ".tmp")
        tmp_out.write_text(json.dumps({"agent": str(loaded.path), "planner": cfg.to_dict(), "runs": runs}, indent=2))
        tmp_out.replace(args.out)
        print(f"wrote {args.out}")
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
