"""A controller -> a verified bundle (ONNX + one TVM library or firmware per target): :func:`export_controller`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export import Manifest, export_bundle
from targets import parse_target_list
from tools.controllers.native import Controller
from tools.plant.objectives import search_callables


@dataclass
class ExportedBundle:
    """The outcome of :func:`export_controller`: the bundle's manifest and what it says about verification and memory."""

    bundle: Path
    manifest: Manifest
    unverified: list[str] = field(default_factory=list)  # targets whose library could not be executed here
    parity: dict[str, float | None] = field(default_factory=dict)  # "onnx" and each target -> max |error| of its check
    mcu_memory: dict[str, dict] = field(default_factory=dict)  # microcontroller target -> flash/RAM used and budgets


PARITY_EPISODES = 4  # closed-loop episodes whose visited states the parity gate checks (seeds VISIT_SEED..)
VISIT_SEED = 3000  # the states prune's fine-tuning visits: disjoint from the judge's 0..99 and the search's 2000..


def visited_states(controller: Controller, episodes: int = PARITY_EPISODES, seed: int = VISIT_SEED) -> np.ndarray:
    """Observations the controller passes through in its env (the batched plant for Pendulum-v1, else a vector env)."""
    _, visit_for = search_callables(controller.spec.env_id, episodes, seed)
    return visit_for(episodes, seed)(controller.module.eval()).numpy()


def export_controller(
    controller: Controller,
    targets: str | list[str],
    out: Path,
    *,
    dynamic_batch: bool = False,
    parity_samples: int = 1000,
    fast_math: bool = True,
    runner: str | None = None,
    force: bool = False,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    sign: Path | None = None,
    parity_episodes: int = 0,
    parity_tolerance: float | None = None,
    obs_bounds: tuple[float, float] | None = None,
    map_fn: Callable = map,
) -> ExportedBundle:
    """Export ``controller`` for the named targets (comma-separated or a list) into the bundle folder ``out``.

    ``sign``: a private key file (``prune-and-export keygen``); the bundle is signed with it (``manifest.sig``).
    The parity gate (:mod:`export.parity`) checks the states the controller visits in ``parity_episodes``
    closed-loop episodes of its env (:func:`visited_states`; 0: none), plus ``parity_samples`` from the
    observation box where it is bounded (``obs_bounds`` (low, high): the box of the unbounded dimensions);
    a library may differ from onnxruntime by ``parity_tolerance`` x the action range (default export's).
    ``map_fn``: how the Linux targets' compiles run (an executor's ``map`` fans them out; same bundle bytes).
    """
    target_list = parse_target_list(targets if isinstance(targets, str) else ",".join(targets))
    visited = None
    if parity_episodes:
        if progress:
            progress(f"parity gate: states visited in {parity_episodes} episodes of {controller.spec.env_id}")
        visited = visited_states(controller, parity_episodes)
    manifest = export_bundle(
        controller.module,
        controller.spec,
        target_list,
        out,
        source_path=controller.path,
        source_sha256=controller.sha256,
        architecture=controller.architecture,
        dynamic_batch=dynamic_batch,
        n_parity=parity_samples,
        seed=seed,
        runner=runner,
        force=force,
        fast_math=fast_math,
        progress=progress,
        sign=sign,
        parity_observations=visited,
        obs_bounds=obs_bounds,
        parity_tolerance=parity_tolerance,
        map_fn=map_fn,
    )
    memory = {
        n: {
            "flash_bytes": a["flash_bytes"],
            "ram_bytes": a["ram_bytes"],
            "flash_budget_bytes": a["memory"]["flash_budget_bytes"],
            "ram_budget_bytes": a["memory"]["ram_budget_bytes"],
        }
        for n, a in manifest.artifacts.items()
        if a.get("kind") == "mcu"
    }
    unverified = [n for n, v in manifest.verifications().items() if v["status"] != "verified"]
    parity = {
        "onnx": manifest.onnx["parity_max_abs_err"],
        **{n: v["max_abs_err"] for n, v in manifest.verifications().items()},
    }
    return ExportedBundle(Path(out), manifest, unverified, parity, memory)
