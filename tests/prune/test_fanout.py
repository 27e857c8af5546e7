"""The one fan-out seam (Problem.evaluate_many): an objective's ``batch`` changes nothing but how candidates are handed over.

Every search submits its candidates in batches (grid chunks, gd's starts and probe pairs, CMA-ES
generations, TPE batches); the same seed gives the same PruneResult with or without ``batch``, and
the candidates a batch gets pickle (another process can evaluate them).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import cloudpickle
import numpy as np
import pytest
import torch
import torch.fx as fx
from torch import nn

from prune import find_groups, keep_indices, portable, prune, prune_budgets, score, shrink

CASES = {  # method -> options; each fans out in batches larger than one
    "gd": {},
    "gd-fd": {"gradient": "fd"},
    "grid": {"resolution": 0.2},
    "cmaes": {"population": 6},
    "tpe": {"population": 4},
}


def without_seconds(d: dict) -> dict:
    """A to_dict() without its wall times (the only thing two equal runs may differ in)."""
    d = {k: v for k, v in d.items() if k != "seconds"}
    if d.get("finetune"):
        d["finetune"] = {k: v for k, v in d["finetune"].items() if k != "seconds"}
    return d


def with_batch(
    objective: Callable[[nn.Module], object],
    sizes: list[int],
    transport: Callable[[nn.Module], nn.Module] = lambda m: m,
):
    """The same objective offering ``batch(models)``, which records each batch's size and scores ``transport(model)``."""

    def batched(model):
        return objective(model)

    def batch(models):
        sizes.append(len(models))
        return [objective(transport(m)) for m in models]

    batched.batch = batch  # type: ignore[attr-defined]
    return batched


def logged(objective: Callable[[nn.Module], object], log: list, widths: Callable[[nn.Module], tuple[int, ...]]):
    """``objective`` that appends the hidden widths of every model it judges to ``log`` (the evaluation order)."""

    def run(model):
        log.append(widths(model))
        return objective(model)

    return run


@pytest.fixture
def per_episode(states) -> Callable[[nn.Module], Callable[[nn.Module], np.ndarray]]:
    """per_episode(teacher): 32 per-episode scores (minus the output error on 8 states each), so the guard takes part."""

    def make(teacher: nn.Module) -> Callable[[nn.Module], np.ndarray]:
        with torch.no_grad():
            target = teacher(states)

        def objective(model: nn.Module) -> np.ndarray:
            with torch.no_grad():
                return (-(model(states) - target).pow(2)).reshape(32, 8).mean(1).numpy()

        return objective

    return make


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["mean", "episodes"])
def test_a_batch_objective_gives_the_same_result_in_batches_larger_than_one(
    four_layer, fidelity, per_episode, states, hidden_widths, case, kind
):
    g = find_groups(four_layer, states[:2])
    method = case.split("-")[0]
    base = fidelity(four_layer) if kind == "mean" else per_episode(four_layer)
    radius = lambda m: 0.5 + 1e-4 * sum(p.numel() for p in m.parameters())  # noqa: E731  (a stability constraint that binds)
    opts = dict(method=method, tolerance=0.03, max_evaluations=30, seed=2, radius_check=radius, **CASES[case])
    plain_log: list = []
    batch_log: list = []
    sizes: list[int] = []
    plain = prune(four_layer, g, 0.3, logged(base, plain_log, hidden_widths), **opts)
    batched = prune(four_layer, g, 0.3, with_batch(logged(base, batch_log, hidden_widths), sizes), **opts)
    assert without_seconds(batched.to_dict()) == without_seconds(plain.to_dict())
    assert batched.search.history == plain.search.history and batched.search.best_points == plain.search.best_points
    # the objective met the same candidates in the same order (the unpruned model first, then every candidate)
    assert batch_log == plain_log
    assert sum(sizes) == batched.search.evaluations and max(sizes) > 1


@pytest.mark.parametrize("method", ["gd", "cmaes", "tpe"])
def test_budgets_started_from_the_previous_best_points_are_the_same_in_batches(four_layer, fidelity, states, method):
    g = find_groups(four_layer, states[:2])
    sizes: list[int] = []
    opts = dict(method=method, tolerance=0.03, max_evaluations=20, seed=1, population=4 if method != "gd" else None)
    plain = prune_budgets(four_layer, g, [0.5, 0.3, 0.15], fidelity(four_layer), **opts)
    batched = prune_budgets(four_layer, g, [0.5, 0.3, 0.15], with_batch(fidelity(four_layer), sizes), **opts)
    assert [without_seconds(r.to_dict()) for r in batched] == [without_seconds(r.to_dict()) for r in plain]
    assert any(s.origin == "previous" for s in batched[1].search.starts)
    assert max(sizes) > 1


def test_a_batch_that_stops_the_search_midway_drops_the_rest_of_the_batch(tanh_mlp, fidelity, states):
    model = tanh_mlp(16, 16)
    g = find_groups(model, states[:2])
    opts = dict(method="grid", resolution=0.05, tolerance=0.03)
    full = prune(model, g, 0.3, fidelity(model), **opts)
    ceiling = sorted(set(full.search.history))[-2]  # the second-best value the grid met: reached partway through
    sizes: list[int] = []
    plain = prune(model, g, 0.3, fidelity(model), ceiling=ceiling, **opts)
    batched = prune(model, g, 0.3, with_batch(fidelity(model), sizes), ceiling=ceiling, **opts)
    assert plain.search.stopped == "ceiling" and plain.search.evaluations < full.search.evaluations
    assert plain.search.history == full.search.history[: plain.search.evaluations]
    assert without_seconds(batched.to_dict()) == without_seconds(plain.to_dict())
    assert sum(sizes) > batched.search.evaluations  # the batch evaluated past the stop; those scores were dropped


GRAPH_FORMS = ("fx", "export")


def graph_form(model: nn.Module, x: torch.Tensor, form: str) -> fx.GraphModule:
    """``model`` as a symbolic trace or as a torch.export module (what the importer hands over)."""
    if form == "fx":
        return fx.symbolic_trace(model)
    return torch.export.export(model, (x[:4],), dynamic_shapes=({0: torch.export.Dim.AUTO},)).module()


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
@pytest.mark.parametrize("form", GRAPH_FORMS)
def test_a_shrunk_graph_module_candidate_pickles_and_computes_the_same(layernorm_mlp, states, form, dumps):
    gm = graph_form(layernorm_mlp, states, form)
    g = find_groups(gm, states[:2])
    small = shrink(gm, g, keep_indices(score(gm, g, "l1"), {grp.name: grp.size // 2 for grp in g.groups}))
    assert isinstance(small, fx.GraphModule)
    sent = portable(small)
    copy = pickle.loads(dumps(sent))
    assert isinstance(copy, fx.GraphModule)
    with torch.no_grad():
        assert torch.equal(copy(states), small(states)) and torch.equal(sent(states), small(states))
    assert sum(p.numel() for p in copy.parameters()) == sum(p.numel() for p in small.parameters())


def test_a_torch_export_module_does_not_pickle_as_it_is_hence_portable(layernorm_mlp, states):
    gm = graph_form(layernorm_mlp, states, "export")
    with pytest.raises(
        (AttributeError, TypeError, pickle.PicklingError)
    ):  # torch 2.13: a local pre-hook lambda, a local guard function
        pickle.dumps(gm)
    assert portable(layernorm_mlp) is layernorm_mlp  # an nn.Module is handed over as it is
    traced = fx.symbolic_trace(layernorm_mlp)
    assert portable(traced) is traced  # a plain GraphModule already pickles: handed over as it is
    with torch.no_grad():
        assert torch.equal(pickle.loads(pickle.dumps(portable(gm)))(states), gm(states))


@pytest.mark.parametrize("form", GRAPH_FORMS)
def test_a_batch_evaluating_pickled_copies_gives_the_same_result(layernorm_mlp, fidelity, states, form):
    gm = graph_form(layernorm_mlp, states, form)
    g = find_groups(gm, states[:2])
    sizes: list[int] = []
    opts = dict(method="grid", resolution=0.25, tolerance=0.05)
    plain = prune(gm, g, 0.5, fidelity(gm), **opts)
    batched = prune(gm, g, 0.5, with_batch(fidelity(gm), sizes, lambda m: pickle.loads(pickle.dumps(m))), **opts)
    assert without_seconds(batched.to_dict()) == without_seconds(plain.to_dict())
    assert max(sizes) > 1
