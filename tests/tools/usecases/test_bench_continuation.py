"""The TD-MPC and autoencoder benches solve a method's budgets as one continuation: the largest budget is the search
it would be alone, the smaller ones start from its best points, and the rows keep the order of the budgets."""

from __future__ import annotations

from rich.console import Console

from tools.usecases.autoencoder.bench import prune_ae, prune_ae_budgets, quick
from tools.usecases.autoencoder.digits import load
from tools.usecases.autoencoder.model import autoencoder_groups, load_autoencoder
from tools.usecases.autoencoder.results import AEBenchConfig
from tools.usecases.tdmpc.bench import QUICK, TdmpcBenchConfig, run_tdmpc_bench


def test_the_autoencoder_budgets_are_one_continuation_whose_first_budget_is_the_search_alone():
    cfg = quick(AEBenchConfig(keeps=(0.25, 0.5), methods=("gd",)))
    model, _ = load_autoencoder()
    groups = autoencoder_groups(model, cfg.prune_code)
    data = load(None, cfg.seed)
    solved = prune_ae_budgets(model, groups, data, "gd", True, cfg)
    assert list(solved) == [0.5, 0.25]  # largest first
    alone = prune_ae(model, groups, data, "gd", 0.5, True, cfg)
    assert solved[0.5].search.component_coefficients == alone.search.component_coefficients
    assert solved[0.5].objective_after == alone.objective_after
    for keep, r in solved.items():
        assert r.search.feasible and keep - cfg.tolerance <= r.search.keep_fraction <= keep
    assert solved[0.25].after.params < solved[0.5].after.params


def test_the_tdmpc_bench_solves_each_methods_budgets_together_and_lists_rows_budget_major(tmp_path):
    cfg = TdmpcBenchConfig(budgets=(0.5, 0.25), methods=("uniform-l1", "random"), export=False, **QUICK)
    report = run_tdmpc_bench(cfg, tmp_path, Console(quiet=True))
    assert [(r.method, r.keep) for r in report.rows] == [
        ("uniform-l1", 0.5),
        ("random", 0.5),
        ("uniform-l1", 0.25),
        ("random", 0.25),
    ]
    for r in report.rows:  # a uniform point is one point: it may fall below the band, and the row says so
        assert r.keep_fraction <= r.keep and r.feasible == (r.keep - cfg.tolerance <= r.keep_fraction)
    assert report.rows[2].params < report.rows[0].params
    assert report.band == {"tolerance": 0.01, "used": 0.01, "why": None}  # one unit of the agent is 0.25%
