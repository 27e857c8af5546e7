"""A trained user's controller end to end: stable-baselines3 PPO with ``VecNormalize`` on InvertedPendulum-v5.

Reads top to bottom. PPO (MlpPolicy, [64, 64] Tanh) is trained inside ``VecNormalize`` for ``--steps``
environment steps (20k by default, about a minute here; the training stops early at ``--time-box``
seconds), saved as SB3 saves it: ``ppo.zip`` and ``vecnormalize.pkl`` beside it. From there on only the
command line runs, as a user would run it (each step a fresh ``python -m tools.cli`` process):

1. ``eval``: the zip's return on gymnasium seeds 0..N-1 (its statistics are found beside it; the same
   zip without them is evaluated too, to show what a silently unnormalised policy scores);
2. ``prune --keep 0.25``: the pruned graph (normaliser and clip inside) written as ``pruned.pt2``;
3. ``export --targets cortex-a72``: ONNX + the TVM library for the Cortex-A72, verified in the firmware stub;
4. ``hil --episodes K``: lockstep episodes of the device library against the host's pruned graph.

Prints one table and writes ``summary.json`` in ``--out``.

    python -m tools.usecases.ppo_vecnormalize --out /tmp/ppo_ip
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ENV = "InvertedPendulum-v5"


def train(out: Path, steps: int, time_box: float, seed: int) -> dict:
    """PPO inside VecNormalize for ``steps`` steps (or until ``time_box`` seconds); ppo.zip and vecnormalize.pkl in ``out``."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)

    class TimeBox(BaseCallback):
        """Stop the training once the time box is spent."""

        def __init__(self, deadline: float) -> None:
            super().__init__()
            self.deadline = deadline

        def _on_step(self) -> bool:
            return time.monotonic() < self.deadline

    start = time.monotonic()
    venv = VecNormalize(make_vec_env(ENV, n_envs=1, seed=seed))
    model = PPO(
        "MlpPolicy", venv, policy_kwargs={"net_arch": [64, 64]}, n_steps=1024, batch_size=64, seed=seed, device="cpu"
    )
    model.learn(steps, callback=TimeBox(start + time_box))
    model.save(out / "ppo.zip")
    venv.save(str(out / "vecnormalize.pkl"))
    return {"steps": int(model.num_timesteps), "seconds": time.monotonic() - start}


def cli(*args: str) -> dict:
    """``python -m tools.cli ARGS --json`` in a fresh process: its one JSON object (a failure stops the script)."""
    proc = subprocess.run([sys.executable, "-m", "tools.cli", *args, "--json"], capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        sys.exit(f"tools.cli {' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for the zip, statistics, pruned model, bundle, summary"
    )
    parser.add_argument("--steps", type=int, default=20_000, help="PPO environment steps (default 20000)")
    parser.add_argument(
        "--time-box", type=float, default=360.0, help="stop training after this many seconds (default 360)"
    )
    parser.add_argument("--episodes", type=int, default=20, help="eval episodes, unpruned and pruned (default 20)")
    parser.add_argument("--hil-episodes", type=int, default=5, help="lockstep HIL episodes (default 5)")
    parser.add_argument("--method", default="uniform-l1", help="prune method (default uniform-l1)")
    parser.add_argument("--target", default="cortex-a72", help="export/HIL target (default cortex-a72)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    trained = train(out, args.steps, args.time_box, args.seed)
    zip_path = out / "ppo.zip"
    unpruned = cli("eval", "--controller", str(zip_path), "--env", ENV, "--episodes", str(args.episodes))
    alone = out / "without_statistics"
    alone.mkdir(exist_ok=True)
    shutil.copy(zip_path, alone / "ppo.zip")
    raw = cli("eval", "--controller", str(alone / "ppo.zip"), "--env", ENV, "--episodes", str(args.episodes))
    pruned = cli(
        "prune",
        "--controller",
        str(zip_path),
        "--env",
        ENV,
        "--keep",
        "0.25",
        "--tolerance",
        "0.05",
        "--method",
        args.method,
        "--seed",
        str(args.seed),
        "--judge-episodes",
        str(args.episodes),
        "--out",
        str(out / "pruned.pt"),
    )
    program = pruned["files"]["controller"]
    bundle = cli("export", "--controller", program, "--targets", args.target, "--out", str(out / "bundle"), "--force")
    hil = cli("hil", "--bundle", str(out / "bundle"), "--target", args.target, "--episodes", str(args.hil_episodes))
    diffs = [abs(a - b) for a, b in zip(hil["returns"], hil["host_returns"])]
    summary = {
        "env": ENV,
        "training": trained,
        "obs_norm": unpruned.get("obs_norm"),
        "return_unpruned": unpruned["mean"],
        "return_unpruned_without_statistics": raw["mean"],
        "return_pruned": pruned["return_after"],
        "params": [pruned["params_before"], pruned["params_after"]],
        "keep_fraction": pruned["keep_fraction"],
        "feasible": pruned["feasible"],
        "pruned_file": program,
        "export_parity": bundle["parity"],
        "unverified": bundle["unverified"],
        "hil_target": args.target,
        "hil_returns": hil["returns"],
        "hil_host_returns": hil["host_returns"],
        "hil_max_episode_diff": max(diffs),
        "pruned_within_5_percent": abs(pruned["return_after"] - unpruned["mean"]) <= 0.05 * abs(unpruned["mean"]),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"PPO + VecNormalize on {ENV}: {trained['steps']} steps in {trained['seconds']:.0f} s")
    print(
        f"  return unpruned (with statistics, {args.episodes} ep.): {unpruned['mean']:.1f}; "
        f"same zip without its statistics: {raw['mean']:.1f}"
    )
    print(
        f"  pruned to {pruned['keep_fraction']:.1%} of prunable parameters ({pruned['params_before']} -> "
        f"{pruned['params_after']} parameters), {args.method}: return {pruned['return_after']:.1f}"
    )
    print(f"  export to {args.target}: parity {bundle['parity']}, unverified {bundle['unverified']}")
    print(
        f"  HIL {args.target}, {args.hil_episodes} lockstep episodes: device {hil['returns']} host {hil['host_returns']}, "
        f"max |diff| per episode {max(diffs):.3g}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
