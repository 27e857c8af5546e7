"""On a real two-node Ray cluster: the same search result as in-process, a worker node lost mid-search, a farm of boards."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import ray.cloudpickle
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from prune import PruneResult, find_groups, prune
from tools.cli import main
from tools.controllers.native import mlp_architecture, pendulum_spec, save_controller
from tools.pipeline.hil import FIDELITY, EpisodeReport, run_hil
from tools.pipeline.hil_farm import run_hil_farm
from tools.plant.episodes import SEARCH_SEED
from tools.plant.objectives import radius_check, return_objective
from tools.plant.policy import as_policy
from tools.scale import Board, Episode, Farm, LocalExecutor, RayExecutor, ScaleError, batched, run_on_farm
from tools.usecases.tdmpc.bench import QUICK, TdmpcBenchConfig
from tools.usecases.tdmpc.bench import run_into as tdmpc_into

# The helpers below run inside Ray workers: ship them by value (this test module is not importable there).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SEARCHES: dict[str, dict[str, Any]] = {
    "grid": dict(resolution=0.25),
    "gd": dict(max_evaluations=16),
    "cmaes": dict(max_evaluations=18, population=6),
}


def search(model: torch.nn.Module, method: str, objective) -> PruneResult:
    """A short search of the small pendulum controller at half its prunable parameters, seed 0."""
    torch.set_num_threads(1)
    example = torch.zeros(8, 3)
    groups = find_groups(model, example)
    return prune(model, groups, 0.5, objective, method=method, seed=0, radius_check=radius_check, **SEARCHES[method])


def fingerprint(result: PruneResult) -> str:
    """Everything a search decided, as JSON: the summary (timing left out), the history of the best, the chosen weights."""
    summary = {k: v for k, v in result.to_dict().items() if k != "seconds"}
    weights = {k: v.tolist() for k, v in result.model.state_dict().items()}
    return json.dumps({"summary": summary, "history": result.search.history, "weights": weights}, sort_keys=True)


def short_objective():
    """The closed-loop return on the batched pendulum, 4 fixed episodes (the search's seeds)."""
    return return_objective(episodes=4, seed=SEARCH_SEED)


@pytest.mark.parametrize("method", list(SEARCHES))
def test_the_same_seed_gives_the_same_search_locally_and_on_the_cluster(method, ray_cluster, small_controller):
    local = search(small_controller, method, batched(short_objective(), LocalExecutor()))
    executor = RayExecutor(address=ray_cluster.address)
    objective = batched(short_objective(), executor)
    on_ray = search(small_controller, method, objective)
    assert fingerprint(on_ray) == fingerprint(local)
    assert (
        objective.models_sent == on_ray.search.evaluations and executor.tasks > 0
    )  # every candidate went to the cluster


def test_ray_executor_maps_in_order_across_both_nodes(ray_cluster):
    executor = RayExecutor(address=ray_cluster.address, chunk=1)
    nodes = executor.map(lambda x: (x * x, ray.get_runtime_context().get_node_id()), list(range(12)))
    assert [v for v, _ in nodes] == [x * x for x in range(12)]
    assert len(ray.nodes()) >= 2
    executor.close()
    assert ray.is_initialized()  # it joined the test's connection and leaves it open


@dataclass
class HangOnNode:
    """An objective that, the first time it runs on ``node_id``, marks ``marker`` and hangs (until its node is killed).

    Every evaluation also takes ``pause`` seconds, so that the other nodes cannot drain a population before the victim gets its share.
    """

    objective: object
    node_id: str
    marker: str
    pause: float = 0.2

    def __call__(self, model):
        if ray.get_runtime_context().get_node_id() == self.node_id and not os.path.exists(self.marker):
            Path(self.marker).touch()
            time.sleep(120)
        time.sleep(self.pause)
        return self.objective(model)


@ray.remote(num_cpus=1)
def warm_up() -> str:
    """Import what a candidate's evaluation needs, so the node's worker is as ready as the others'."""
    import tools.plant.objectives  # noqa: F401

    return ray.get_runtime_context().get_node_id()


def test_a_worker_node_killed_mid_search_and_the_search_finishes_with_the_same_result(
    ray_cluster, small_controller, tmp_path
):
    expected = fingerprint(search(small_controller, "cmaes", short_objective()))
    victim = ray_cluster.add_node(num_cpus=1, object_store_memory=100_000_000)
    ray_cluster.wait_for_nodes()
    on_victim = NodeAffinitySchedulingStrategy(victim.node_id, soft=False)
    assert ray.get(warm_up.options(scheduling_strategy=on_victim).remote()) == victim.node_id
    marker = tmp_path / "victim-started"
    killed, done = threading.Event(), threading.Event()

    def kill_the_victim_once_it_works() -> None:
        while not marker.exists() and not done.is_set():
            time.sleep(0.05)
        if marker.exists():
            ray_cluster.remove_node(victim, allow_graceful=False)  # its raylet, store and workers, SIGKILLed
            killed.set()

    killer = threading.Thread(target=kill_the_victim_once_it_works)
    killer.start()
    try:
        executor = RayExecutor(address=ray_cluster.address)
        assert executor.workers == 3
        objective = batched(HangOnNode(short_objective(), victim.node_id, str(marker)), executor)
        start = time.perf_counter()
        got = fingerprint(search(small_controller, "cmaes", objective))
    finally:
        done.set()
        killer.join()
    assert killed.is_set(), "no candidate ran on the victim node"
    assert time.perf_counter() - start < 100  # the hung task was rerun elsewhere, not waited out
    assert got == expected


def hil_episode(bundle: Path, module: torch.nn.Module, board: Board, episode: Episode) -> EpisodeReport:
    """One lockstep HIL episode of ``module``'s bundle on ``board`` (runs in the board's actor)."""
    return run_hil(
        bundle, board.target, as_policy(module), episodes=1, seed=episode.seed, runner=board.runner
    ).episodes[0]


def dies_once(marker: str, victim: str, inner, board: Board, episode: Episode):
    """``inner``, except that the first episode given to board ``victim`` kills its actor's process (SIGKILL)."""
    if board.name == victim and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return inner(board, episode)


def test_a_farm_of_two_boards_runs_hil_episodes_on_the_board_of_each_target(
    ray_cluster, small_bundle, small_controller
):
    farm = Farm((Board("host", "x86_64", "native"), Board("a7", "cortex-a7", "qemu")), "farm.toml")
    episodes = [
        Episode(i, target, seed)
        for i, (target, seed) in enumerate([("x86_64", 3), ("cortex-a7", 3), ("x86_64", 4), ("cortex-a7", 4)])
    ]
    run = run_on_farm(
        farm, episodes, functools.partial(hil_episode, small_bundle, small_controller), ray_cluster.address
    )
    assert run.boards == ["host", "a7", "host", "a7"]
    assert [r.seed for r in run.results] == [3, 3, 4, 4]
    assert all(r.return_diff <= FIDELITY and r.max_abs_action_diff < 1e-4 for r in run.results)
    assert run.dead_boards == [] and run.reruns == []
    assert np.allclose([r.ret for r in run.results[0::2]], [r.ret for r in run.results[1::2]], atol=2 * FIDELITY)


def test_a_board_that_dies_is_taken_out_and_its_episode_rerun_on_another_board(
    ray_cluster, small_bundle, small_controller, tmp_path
):
    farm = Farm((Board("x86-a", "x86_64", "native"), Board("x86-b", "x86_64", "native")), "farm.toml")
    episodes = [Episode(i, "x86_64", seed) for i, seed in enumerate(range(10, 14))]
    inner = functools.partial(hil_episode, small_bundle, small_controller)
    run = run_on_farm(
        farm, episodes, functools.partial(dies_once, str(tmp_path / "died"), "x86-b", inner), ray_cluster.address
    )
    assert run.dead_boards == ["x86-b"]
    assert len(run.reruns) == 1
    rerun = run.to_dict()["reruns"][0]
    assert rerun["failed_board"] == "x86-b" and rerun["rerun_on"] == "x86-a" and rerun["reason"]
    assert run.boards == ["x86-a"] * 4 and [r.seed for r in run.results] == [10, 11, 12, 13]
    assert all(r.return_diff <= FIDELITY for r in run.results)


def test_a_farm_whose_every_board_of_a_target_died_stops_naming_the_boards(ray_cluster, tmp_path):
    farm = Farm((Board("only", "x86_64", "native"),), "farm.toml")
    fn = functools.partial(dies_once, str(tmp_path / "died"), "only", lambda board, episode: episode.seed)
    with pytest.raises(
        ScaleError, match="farm.toml: every board of target x86_64 died \\(only\\); 2 episode\\(s\\) not run"
    ):
        run_on_farm(farm, [Episode(0, "x86_64", 0), Episode(1, "x86_64", 1)], fn, ray_cluster.address)


def test_a_farm_whose_boards_the_cluster_does_not_offer_is_refused_naming_the_resource(ray_cluster):
    farm = Farm((Board("pi", "cortex-a72", "native"),), "lab.toml")
    with pytest.raises(ScaleError, match="lab.toml: 1 board\\(s\\) need the Ray resource 'board:cortex-a72'"):
        run_on_farm(farm, [Episode(0, "cortex-a72", 0)], hil_episode, ray_cluster.address)
    with pytest.raises(ScaleError, match="no board of target\\(s\\) x86_64"):
        run_on_farm(farm, [Episode(0, "x86_64", 0)], hil_episode, ray_cluster.address)


def test_hil_on_a_farm_reports_the_episodes_a_single_device_runs(ray_cluster, small_bundle, small_controller):
    farm = Farm((Board("x86-a", "x86_64", "native"), Board("x86-b", "x86_64", "native")), "farm.toml")
    policy = as_policy(small_controller)
    report, run = run_hil_farm(farm, small_bundle, "x86_64", policy, episodes=4, seed=5, address=ray_cluster.address)
    alone = run_hil(small_bundle, "x86_64", policy, episodes=4, seed=5).to_dict()
    d = report.to_dict()
    assert d["ok"] and d["seeds"] == alone["seeds"] == [5, 6, 7, 8]
    assert d["returns"] == pytest.approx(alone["returns"], abs=1e-9)
    assert d["runner"].startswith("farm x86-a (stub for 'x86_64' (native))")
    assert run.dead_boards == [] and set(run.boards) <= {"x86-a", "x86-b"}


def test_prune_on_the_cluster_prints_the_json_it_prints_locally(cli, ray_cluster):
    args = (
        "prune",
        "--method",
        "grid",
        "--resolution",
        "0.5",
        "--keep",
        "0.5",
        "--search-episodes",
        "4",
        "--judge-episodes",
        "0",
        "--json",
    )
    local = cli(*args)
    on_ray = cli(*args, "--executor", "ray", "--ray-address", ray_cluster.address)
    assert local.returncode == 0 and on_ray.returncode == 0, local.stderr[-2000:] + on_ray.stderr[-2000:]
    assert "search candidates evaluated on ray (2 workers)" in on_ray.stderr  # the cluster's two CPUs
    drop = lambda d: {k: v for k, v in d.items() if k != "seconds"}  # noqa: E731
    assert drop(json.loads(on_ray.stdout)) == drop(json.loads(local.stdout))


def test_hil_with_a_farm_file_spreads_the_episodes_and_reports_the_boards(
    ray_cluster, small_bundle, small_controller, tmp_path, capsys
):
    path = tmp_path / "c.pt"
    save_controller(path, small_controller, pendulum_spec(), mlp_architecture(small_controller, "elu"))
    farm = tmp_path / "farm.toml"
    farm.write_text(
        '[[board]]\nname = "x86-a"\ntarget = "x86_64"\nrunner = "native"\n\n'
        '[[board]]\nname = "x86-b"\ntarget = "x86_64"\nrunner = "native"\n'
    )
    code = main(
        [
            "hil",
            "--bundle",
            str(small_bundle),
            "--target",
            "x86_64",
            "--episodes",
            "3",
            "--seed",
            "2",
            "--controller",
            str(path),
            "--compare-other-controller",
            "--farm",
            str(farm),
            "--ray-address",
            ray_cluster.address,
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] and out["seeds"] == [2, 3, 4]
    assert out["farm"]["file"] == str(farm) and out["farm"]["dead_boards"] == [] and len(out["farm"]["boards"]) == 3
    assert out["runner"].startswith("farm x86-a")


def test_bench_on_the_cluster_writes_the_report_it_writes_locally(cli, ray_cluster, small_controller, tmp_path):
    path = tmp_path / "c.pt"
    save_controller(path, small_controller, pendulum_spec(), mlp_architecture(small_controller, "elu"))
    args = (
        "bench", "--quick", "--controller", str(path), "--episodes", "2", "--methods", "gd,tpe",
        "--keep", "0.5", "0.25", "--scenarios", "push", "--json",
    )  # fmt: skip
    local = cli(*args, "--out", str(tmp_path / "local"))
    on_ray = cli(*args, "--out", str(tmp_path / "ray"), "--executor", "ray", "--ray-address", ray_cluster.address)
    assert local.returncode == 0 and on_ray.returncode == 0, local.stderr[-2000:] + on_ray.stderr[-2000:]
    assert "bench cells and compiles run on ray (2 workers)" in on_ray.stderr
    a, b = (json.loads((tmp_path / side / "report.json").read_text()) for side in ("local", "ray"))
    assert [m["label"] for m in a["models"]] == ["unpruned", "gd@0.5", "gd@0.25", "tpe@0.5", "tpe@0.25"]
    measured = lambda m: {k: v for k, v in m.items() if k != "stub_peak_rss_kb"}  # noqa: E731  # RSS is measured
    assert [measured(m) for m in a["models"]] == [measured(m) for m in b["models"]]  # same controllers (sha256, sizes)
    assert a["reward"] == b["reward"] and a["robust"] == b["robust"]  # the same returns on every runtime
    for m in a["models"][1:]:
        assert (tmp_path / "local" / m["file"]).read_bytes() == (tmp_path / "ray" / m["file"]).read_bytes()
    for bundle in ("unpruned", "tpe@0.25"):  # the libraries compiled on the cluster are the ones compiled here
        so = f"bundles/{bundle}/x86_64.so"
        assert (tmp_path / "local" / so).read_bytes() == (tmp_path / "ray" / so).read_bytes()


def untimed(value: Any) -> Any:
    """A report's JSON without its wall times (every "seconds" field)."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def test_the_tdmpc_bench_on_the_cluster_writes_the_report_it_writes_locally(ray_cluster, tmp_path):
    from rich.console import Console

    # two methods, one budget, a few short episodes: one cell per method, one for each node's CPU
    cfg = TdmpcBenchConfig(budgets=(0.5,), methods=("uniform-l1", "gd"), export=False, **QUICK)
    executor = RayExecutor(address=ray_cluster.address)
    try:
        tdmpc_into(cfg, tmp_path / "local", False, Console(quiet=True))
        tdmpc_into(cfg, tmp_path / "ray", False, Console(quiet=True), executor)
    finally:
        torch.set_flush_denormal(False)  # the bench sets it in this process; the other checks run with the default
    assert executor.tasks == 2  # each method's cell went to the cluster
    a, b = (json.loads((tmp_path / side / "report.json").read_text()) for side in ("local", "ray"))
    assert [(r["method"], r["keep"]) for r in a["rows"]] == [("uniform-l1", 0.5), ("gd", 0.5)]
    assert a["rows"][1]["evaluations"] > 1  # gd searched: its candidates, objective and judge return match below
    assert untimed(b) == untimed(a)
