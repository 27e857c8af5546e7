"""Train the shipped TD-MPC agent for Pendulum-v1 from a fixed data set, reproducibly, in a few minutes.

Reads top to bottom. Offline, on one thread, seeded:
1. Data: episodes on the batched plant (``tools/pendulum.py``) from gymnasium's start distribution,
   played by the energy-shaping expert (``tools/expert.py``) with Gaussian torque noise, by the
   expert with random actions mixed in, and by uniform random actions.
2. Model learning as in TD-MPC: from each sampled window of ``window`` steps, z_0 = h(o_0) is rolled
   through d with the recorded actions; losses are latent consistency ||d(z_t, a_t) - h'(o_{t+1})||^2
   (h' an EMA target encoder), reward regression R(z_t, a_t) ~ r_t and TD learning of the twin Q
   with n-step targets sum_k gamma^k r_{t+k} + gamma^n min Q'(h'(o_{t+n}), pi(h'(o_{t+n}))) (Q' the
   EMA target), each weighted by rho^t along the window.
3. The policy pi is cloned from the expert's action on every recorded observation (through a
   detached z, as TD-MPC's policy does not shape the latent).
The agent is then judged with planning (MPPI, ``tools/tdmpc.py``) on gymnasium's Pendulum-v1, seeds 0..99.

    python -m tools.usecases.tdmpc.train --out tools/assets/pendulum_tdmpc.pt
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tools.plant.episodes import episode_seeds
from tools.plant.expert import energy_shaping_expert
from tools.plant.pendulum import BatchedPendulum
from tools.plant.rollouts import rollout_fast
from tools.usecases.tdmpc.agent import (
    MAX_TORQUE,
    AgentConfig,
    Planner,
    PlannerConfig,
    PolicyPath,
    TDMPCAgent,
    save_agent,
)
from tools.usecases.tdmpc.evaluate import planning_return


@dataclass
class TrainConfig:
    seed: int = 0
    """seeds torch and numpy (data, init, batches)"""
    latent: int = 32
    """latent width"""
    hidden: int = 64
    """hidden width of every component"""
    noisy_expert_episodes: int = 256
    """episodes of the expert with Gaussian torque noise"""
    expert_noise: float = 0.5
    """std of that noise (N m)"""
    mixed_episodes: int = 128
    """episodes of the expert with a uniform random action at a fraction of the steps"""
    random_fraction: float = 0.3
    """that fraction"""
    random_episodes: int = 128
    """episodes of uniform random torques"""
    steps: int = 3000
    """gradient steps"""
    batch: int = 256
    """windows per step"""
    window: int = 5
    """latent rollout length per window (TD-MPC's horizon of model learning)"""
    td_steps: int = 5
    """n of the n-step TD targets"""
    gamma: float = 0.99
    """discount"""
    rho: float = 0.5
    """temporal weight of the losses along a window"""
    lr: float = 1e-3
    """Adam learning rate"""
    tau: float = 0.01
    """EMA rate of the target encoder and target Q"""
    consistency_coef: float = 2.0
    """weight of the latent consistency loss (TD-MPC's)"""
    reward_coef: float = 0.5
    """weight of the reward loss (TD-MPC's)"""
    value_coef: float = 0.1
    """weight of the Q loss (TD-MPC's)"""
    value_scale: float = 100.0
    """Q errors are divided by this before squaring (returns are hundreds; keeps the losses comparable)"""
    grad_clip: float = 10.0
    """global gradient-norm clip"""
    eval_every: int = 1000
    """steps between validation printouts"""
    val_seed: int = 1000
    """validation episodes start here (disjoint from the judge's 0..99 and the search's 2000..)"""


def collect(cfg: TrainConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Episodes on the batched plant: obs (E, T + 1, 3), normalised actions (E, T, 1), rewards (E, T)."""
    plant = BatchedPendulum()
    T = plant.max_episode_steps
    kinds = [("noisy", cfg.noisy_expert_episodes), ("mixed", cfg.mixed_episodes), ("random", cfg.random_episodes)]
    obs_all, act_all, rew_all = [], [], []
    for kind, n in kinds:
        if n == 0:
            continue
        starts = np.stack([rng.uniform(-np.pi, np.pi, n), rng.uniform(-1, 1, n)], axis=1)
        obs = plant.reset_to(starts)
        o, a, r = [obs], [], []
        for _ in range(T):
            expert = energy_shaping_expert(obs)[:, 0].astype(np.float64)
            rand = rng.uniform(-MAX_TORQUE, MAX_TORQUE, n)
            if kind == "noisy":
                u = expert + cfg.expert_noise * rng.standard_normal(n)
            elif kind == "mixed":
                u = np.where(rng.random(n) < cfg.random_fraction, rand, expert)
            else:
                u = rand
            u = np.clip(u, -MAX_TORQUE, MAX_TORQUE).astype(np.float32)
            obs, rew = plant.step(u)
            o.append(obs)
            a.append(u / MAX_TORQUE)
            r.append(rew)
        obs_all.append(np.stack(o, 1))
        act_all.append(np.stack(a, 1)[..., None])
        rew_all.append(np.stack(r, 1))
    data = {
        "obs": torch.as_tensor(np.concatenate(obs_all), dtype=torch.float32),
        "act": torch.as_tensor(np.concatenate(act_all), dtype=torch.float32),
        "rew": torch.as_tensor(np.concatenate(rew_all), dtype=torch.float32),
    }
    flat = data["obs"].reshape(-1, 3)
    data["expert"] = torch.as_tensor(energy_shaping_expert(flat.numpy()) / MAX_TORQUE).reshape(
        *data["obs"].shape[:2], 1
    )
    return data


def losses(
    agent: TDMPCAgent,
    target: TDMPCAgent,
    data: dict[str, torch.Tensor],
    idx: torch.Tensor,
    t0: torch.Tensor,
    cfg: TrainConfig,
) -> dict[str, torch.Tensor]:
    """TD-MPC's model losses over one batch of windows, and the policy's cloning loss."""
    obs, act, rew = data["obs"][idx], data["act"][idx], data["rew"][idx]  # (B, T + 1, 3), (B, T, 1), (B, T)
    ar = torch.arange(len(idx))
    span = cfg.window + cfg.td_steps
    steps = t0[:, None] + torch.arange(span + 1)[None]
    o = obs[ar[:, None], steps]  # (B, span + 1, 3)
    a = act[ar[:, None], steps[:, :span]]
    r = rew[ar[:, None], steps[:, :span]]
    with torch.no_grad():
        z_target = target.encoder(o)  # (B, span + 1, L)
        boot = z_target[:, cfg.td_steps : cfg.td_steps + cfg.window]
        q_boot = target.q_min(boot, agent.policy(boot))[..., 0]  # (B, window)
        disc = cfg.gamma ** torch.arange(cfg.td_steps, dtype=torch.float32)
        n_step = torch.stack([(r[:, t : t + cfg.td_steps] * disc).sum(1) for t in range(cfg.window)], 1)
        td_target = n_step + cfg.gamma**cfg.td_steps * q_boot
    z = agent.encoder(o[:, 0])
    cons = rew_l = val = torch.zeros(())  # weighted sums of the per-step losses over the window
    for t in range(cfg.window):
        w = cfg.rho**t
        q = agent.q(torch.cat([z, a[:, t]], -1))
        val = val + w * (((q - td_target[:, t : t + 1]) / cfg.value_scale) ** 2).mean()
        z, r_hat = agent.next(z, a[:, t])
        rew_l = rew_l + w * ((r_hat[:, 0] - r[:, t]) ** 2).mean()
        cons = cons + w * ((z - z_target[:, t + 1]) ** 2).mean()
    z_all = agent.encoder(o[:, : cfg.window]).detach()
    bc = F.mse_loss(agent.policy(z_all), data["expert"][idx][ar[:, None], steps[:, : cfg.window]])
    return {"consistency": cons, "reward": rew_l, "value": val, "bc": bc}


@torch.no_grad()
def validate(
    agent: TDMPCAgent, cfg: TrainConfig, planner: PlannerConfig, plan_episodes: int = 16
) -> tuple[float, float]:
    """(policy-path return on 100 validation seeds, planning return on the first plan_episodes of them), fast plant."""
    agent.eval()
    path = PolicyPath(agent)
    seeds = episode_seeds(100, cfg.val_seed)
    pol = float(rollout_fast(lambda o: path(torch.as_tensor(o)).numpy(), seeds)[0].mean())
    plan = float(rollout_fast(Planner(agent, planner, seed=cfg.seed), seeds[:plan_episodes])[0].mean())
    agent.train()
    return pol, plan


def train(cfg: TrainConfig, planner: PlannerConfig) -> tuple[TDMPCAgent, dict]:
    """Collect the data, then learn the five components (see the module doc)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    data = collect(cfg, rng)
    E, T = data["rew"].shape
    print(
        f"data: {E} episodes x {T} steps, mean return {float(data['rew'].sum(1).mean()):.1f} ({time.perf_counter() - start:.1f}s)",
        flush=True,
    )
    agent = TDMPCAgent(AgentConfig(latent=cfg.latent, hidden=cfg.hidden))
    target = copy.deepcopy(agent).requires_grad_(False)
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    history = []
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(0, E, (cfg.batch,), generator=gen)
        t0 = torch.randint(0, T - cfg.window - cfg.td_steps + 1, (cfg.batch,), generator=gen)
        parts = losses(agent, target, data, idx, t0, cfg)
        loss = (
            cfg.consistency_coef * parts["consistency"]
            + cfg.reward_coef * parts["reward"]
            + cfg.value_coef * parts["value"]
            + parts["bc"]
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(agent.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            for p, q in zip(target.parameters(), agent.parameters()):
                p.lerp_(q, cfg.tau)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            pol, plan = validate(agent, cfg, planner)
            row = {
                "step": step,
                **{k: float(v.detach()) for k, v in parts.items()},
                "policy_val": pol,
                "plan_val16": plan,
                "seconds": time.perf_counter() - start,
            }
            history.append(row)
            print("  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    agent.eval()
    return agent, {"seconds": time.perf_counter() - start, "history": history, "train_config": asdict(cfg)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tools.usecases.tdmpc.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="agent file to write")
    p.add_argument("--seed", type=int, default=TrainConfig.seed)
    p.add_argument("--steps", type=int, default=TrainConfig.steps)
    p.add_argument("--judge-episodes", type=int, default=100, help="gymnasium episodes judging the planner (0 skips)")
    args = p.parse_args(argv)
    cfg = TrainConfig(seed=args.seed, steps=args.steps)
    planner = PlannerConfig()
    print(f"training TD-MPC agent, seed {cfg.seed}: {asdict(cfg)}; planner {planner.to_dict()}", flush=True)
    agent, info = train(cfg, planner)
    if args.judge_episodes:
        judge = planning_return(agent, planner, args.judge_episodes, 0, judge="gym", seed=cfg.seed)
        info["judge"] = {"mean": judge.mean, "std": judge.std, "min": judge.min, "episodes": args.judge_episodes}
        print(
            f"trained in {info['seconds']:.0f}s; planning return on gymnasium Pendulum-v1 seeds 0..{args.judge_episodes - 1}: "
            f"mean {judge.mean:.1f} std {judge.std:.1f} min {judge.min:.1f}",
            flush=True,
        )
    info.pop("history")
    save_agent(args.out, agent, planner, info)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
