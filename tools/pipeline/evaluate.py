"""A controller's closed-loop return on seeded episodes of its env, timed: :func:`evaluate_controller`."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tools.controllers.native import Controller
from tools.plant.evaluate import ReturnStats, closed_loop_return
from tools.plant.policy import as_policy


@dataclass
class Evaluation:
    """Returns of one judge and how long they took."""

    stats: ReturnStats
    seconds: float

    def to_dict(self) -> dict:
        return {**self.stats.to_dict(), "seconds": self.seconds}


def evaluate_controller(controller: Controller, episodes: int = 100, seed: int = 0, judge: str = "gym") -> Evaluation:
    """Closed-loop return of ``controller`` over episodes seed..seed+episodes-1 of its env, judged by ``judge``."""
    start = time.perf_counter()
    stats = closed_loop_return(as_policy(controller.module), episodes, seed, judge, controller.spec.env_id)
    return Evaluation(stats, time.perf_counter() - start)
