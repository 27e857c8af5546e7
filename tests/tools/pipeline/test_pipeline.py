"""The pipeline's library functions, called with typed arguments on a small controller: each returns its dataclass."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from prune import PruneError
from tools.controllers.load import load_controller
from tools.controllers.native import Controller, mlp_architecture, save_controller
from tools.controllers.source import ControllerSource
from tools.errors import ToolsError
from tools.pipeline.evaluate import Evaluation, evaluate_controller
from tools.pipeline.export import ExportedBundle, export_controller
from tools.pipeline.hil import host_controller
from tools.pipeline.prune import PrunedController, metric_for, parse_components, prune_controller


@pytest.fixture(scope="module")
def controller(small_controller: torch.nn.Module, pendulum, tmp_path_factory: pytest.TempPathFactory) -> Controller:
    """The small 3-32-32-1 controller as a file, loaded (so it has a path and a sha256)."""
    path = tmp_path_factory.mktemp("controller") / "small.pt"
    save_controller(path, small_controller, pendulum, mlp_architecture(small_controller, "elu"))
    return load_controller(path)


def test_evaluate_controller_returns_the_stats_of_the_requested_seeds(controller):
    evaluation = evaluate_controller(controller, episodes=3, seed=5, judge="fast")
    assert isinstance(evaluation, Evaluation)
    assert evaluation.stats.seeds == [5, 6, 7] and len(evaluation.stats.returns) == 3
    assert evaluation.stats.min <= evaluation.stats.mean and evaluation.seconds > 0
    assert evaluation.to_dict()["seconds"] == evaluation.seconds


def test_prune_controller_meets_the_budget_and_writes_the_file(controller, tmp_path):
    out = tmp_path / "pruned.pt"
    pruned = prune_controller(
        controller,
        keep=0.5,
        method="uniform-l1",
        seed=1,
        out=out,
        search_episodes=4,
        tolerance=0.05,
        judge_episodes=0,
        max_evaluations=10,
    )
    assert isinstance(pruned, PrunedController)
    assert pruned.feasible and pruned.summary["method"] == "uniform" and pruned.summary["metric"] == "l1"
    assert 0.45 <= pruned.summary["keep_fraction"] <= 0.5  # 32-wide layers: steps of about 3%
    params = sum(p.numel() for p in pruned.module.parameters())
    assert params == pruned.summary["params_after"] < pruned.summary["params_before"]
    assert "return_before" not in pruned.summary  # judge_episodes=0 skips the judge
    assert pruned.summary["files"]["controller"] == str(out)
    reloaded = load_controller(out)
    assert sum(p.numel() for p in reloaded.module.parameters()) == params
    x = torch.as_tensor(controller.spec.sample_observations(16, 0))
    torch.testing.assert_close(reloaded.module(x), pruned.module(x))


def test_prune_controller_refuses_a_metric_the_method_fixes(controller):
    with pytest.raises(PruneError, match="ranks units by l1"):
        prune_controller(controller, method="uniform-l1", metric="l2")
    assert metric_for("gd", None) == "auto" and metric_for("random", None) == "random"
    with pytest.raises(PruneError, match="expected one of"):
        metric_for("bogus", None)


def test_parse_components_reads_names_and_patterns_and_names_a_bad_one():
    assert parse_components(["hidden=0,2", "head=4"]) == {"hidden": ["0", "2"], "head": ["4"]}
    with pytest.raises(PruneError, match="NAME=PATTERN"):
        parse_components(["nameless"])


def test_export_controller_writes_a_verified_bundle_and_hil_finds_its_source(controller, tmp_path):
    exported = export_controller(controller, "x86_64", tmp_path / "bundle", parity_samples=50)
    assert isinstance(exported, ExportedBundle)
    assert exported.bundle == tmp_path / "bundle" and (exported.bundle / "manifest.json").is_file()
    assert set(exported.manifest.artifacts) == {"x86_64"} and exported.unverified == []
    assert set(exported.parity) == {"onnx", "x86_64"} and all(
        e is not None and e < 1e-4 for e in exported.parity.values()
    )
    assert exported.mcu_memory == {}
    # HIL's host side: no --controller means the file the bundle was exported from, hash-checked
    host = host_controller(exported.bundle, ControllerSource())
    assert host.sha256 == controller.sha256 and Path(host.path) == Path(controller.path)


def test_host_controller_refuses_a_changed_source_file(controller, tmp_path, pendulum):
    path = tmp_path / "c.pt"
    save_controller(path, controller.module, pendulum, controller.architecture)
    exported = export_controller(load_controller(path), ["x86_64"], tmp_path / "bundle", parity_samples=20)
    with torch.no_grad():
        changed = load_controller(path).module
        changed[0].bias.add_(1.0)
    save_controller(path, changed, pendulum, controller.architecture)
    with pytest.raises(ToolsError, match="sha256"):
        host_controller(exported.bundle, ControllerSource())
