"""HIL on a farm of boards: the episodes of one run spread over the free boards of its target (``run_hil_farm``).

Each episode is one :func:`tools.pipeline.hil.run_hil` of one seed on one board, run inside that
board's Ray actor (:func:`tools.scale.run_on_farm`); the episodes come back in seed order and make
one :class:`HilReport`, as if a single device had run them. A board that dies is taken out and its
episode rerun on another board of the target; :class:`FarmRun` says which.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

from tools.pipeline.hil import HilReport, run_hil
from tools.plant.episodes import episode_seeds
from tools.plant.pendulum import ENV_ID
from tools.plant.policy import Policy
from tools.scale import Board, Episode, Farm, FarmRun, run_on_farm


def farm_episode(bundle_dir: Path, policy: Policy, options: dict, board: Board, episode: Episode) -> HilReport:
    """One seeded episode on ``board`` (runs in the board's actor): a one-episode HIL run through the board's runner."""
    return run_hil(bundle_dir, board.target, policy, 1, episode.seed, runner=board.runner, **options)


def run_hil_farm(
    farm: Farm,
    bundle_dir: Path,
    target: str,
    policy: Policy,
    episodes: int = 10,
    seed: int = 0,
    mode: str = "lockstep",
    rate_hz: float | None = None,
    deadline_ms: float | None = None,
    device_args: tuple[str, ...] = (),
    env_id: str = ENV_ID,
    public_key: Path | None = None,
    address: str | None = None,
    progress: Callable[[int, str], None] | None = None,
) -> tuple[HilReport, FarmRun]:
    """:func:`tools.pipeline.hil.run_hil` with the episodes spread over the farm's boards of ``target``.

    ``address``: the Ray cluster (or ``RAY_ADDRESS``), else a local instance with the farm's board
    slots. ``progress(i, board)`` is called as each episode finishes. The report's ``runner`` names
    the boards that ran episodes; the FarmRun lists dead boards and reruns.
    """
    options = dict(
        mode=mode,
        rate_hz=rate_hz,
        deadline_ms=deadline_ms,
        device_args=tuple(device_args),
        env_id=env_id,
        public_key=public_key,
    )
    work = [Episode(i, target, s) for i, s in enumerate(episode_seeds(episodes, seed))]
    fn = functools.partial(farm_episode, Path(bundle_dir).resolve(), policy, options)
    on_result = (lambda ep, board, _: progress(ep.index, board)) if progress is not None else None
    run = run_on_farm(farm, work, fn, address, on_result=on_result)
    first: HilReport = run.results[0]
    used = [b for b in farm.boards if b.name in run.boards]
    report = HilReport(
        target,
        "farm "
        + ", ".join(f"{b.name} ({r.runner})" for b, r in ((b, run.results[run.boards.index(b.name)]) for b in used)),
        mode,
        seed,
        first.rate_hz,
        first.deadline_ms,
        [r.episodes[0] for r in run.results],
    )
    return report, run
