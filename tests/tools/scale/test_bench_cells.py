"""The TD-MPC and autoencoder benches fan their cells out through an executor: the same report from cells run in
other processes, and ``bench --executor`` accepted (and checked) for ``--model autoencoder`` and ``--controller tdmpc``."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from rich.console import Console

from tools.cli import main
from tools.usecases.autoencoder.bench import ae_cells, quick, run_bench
from tools.usecases.autoencoder.results import AEBenchConfig


def with_pid(fn: Callable[[Any], Any], item: Any) -> tuple[Any, int]:
    """``fn(item)`` and the id of the process that ran it."""
    return fn(item), os.getpid()


class PoolExecutor:
    """An executor whose map runs each item in a pool of fresh (spawned) processes: nothing shared with this one."""

    name = "process-pool"
    workers = 2

    def __init__(self) -> None:
        self.pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))
        self.pids: list[int] = []
        self.items = 0

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        out = list(self.pool.map(with_pid, [fn] * len(items), items))
        self.items += len(items)
        self.pids += [pid for _, pid in out]
        return [result for result, _ in out]

    def close(self) -> None:
        self.pool.shutdown()


def untimed(value: Any) -> Any:
    """A report's JSON without wall times and the creation time."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in ("seconds", "created_utc")}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def test_the_autoencoder_bench_gives_the_same_report_from_cells_run_in_other_processes():
    cfg = quick(AEBenchConfig(keeps=(0.5, 0.25), methods=("uniform-l1", "gd")))
    cfg.latency_calls = 0  # timing is not a result
    here, _ = run_bench(cfg, Console(quiet=True))
    pool = PoolExecutor()
    try:
        there, _ = run_bench(cfg, Console(quiet=True), executor=pool)
    finally:
        pool.close()
    assert pool.items == len(ae_cells(cfg)) == 8  # 2 methods x 2 modes x (budgets, bound)
    assert pool.pids and os.getpid() not in pool.pids  # every cell ran in another process
    a, b = here.to_dict(), there.to_dict()
    assert [(r["method"], r["mode"], r["keep"]) for r in a["rows"]][:4] == [
        ("uniform-l1", "shrink", 0.5),
        ("gd", "shrink", 0.5),
        ("uniform-l1", "shrink", 0.25),
        ("gd", "shrink", 0.25),
    ]
    assert a["rows"][1]["evaluations"] > 1 and len(a["bounds"]) == 4
    assert json.dumps(untimed(b), sort_keys=True) == json.dumps(untimed(a), sort_keys=True)


def test_bench_autoencoder_runs_with_the_local_executor(tmp_path, capsys):
    out = tmp_path / "ae"
    argv = ["bench", "--model", "autoencoder", "--quick", "--methods", "uniform-l1", "--keep", "0.5"]
    assert main([*argv, "--executor", "local", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] and [(r["method"], r["mode"]) for r in printed["rows"]] == [
        ("uniform-l1", "shrink"),
        ("uniform-l1", "re-fit"),
    ]
    assert (out / "report.json").exists()


def test_the_tdmpc_and_autoencoder_benches_refuse_a_ray_address_without_the_ray_executor(tmp_path, capsys):
    for which in (["--model", "autoencoder"], ["--controller", "tdmpc"]):
        assert main(["bench", *which, "--ray-address", "auto", "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].endswith("--ray-address auto: only with --executor ray"), err
    assert not (tmp_path / "r").exists()
