"""bench --sweep: a method's budgets are solved as one continuation (largest first), each budget's model saved."""

from rich.console import Console

from tools.bench import harness
from tools.bench.harness import BenchConfig, Sizes
from tools.controllers.load import load_controller


def test_budgets_of_a_method_are_one_continuation_largest_first_and_each_is_saved(tmp_path, monkeypatch):
    calls = []
    real = harness.prune_controller_budgets

    def spy(controller, keeps, method, **kw):
        calls.append((list(keeps), method))
        return real(controller, keeps, method, **kw)

    monkeypatch.setattr(harness, "prune_controller_budgets", spy)
    keeps = [0.25, 0.5]  # asked smallest first: solved largest first, returned in the order asked
    config = BenchConfig(keeps=keeps, methods=["gd"], quick=True)
    made = harness._prune(config, load_controller(None), tmp_path, Sizes.of(True), Console(quiet=True), None, None)
    assert calls == [([0.5, 0.25], "gd")]
    assert [p.name for p in sorted(tmp_path.glob("*.pt")) if "state_dict" not in p.name] == ["gd@0.25.pt", "gd@0.5.pt"]
    assert list(made) == ["gd"]
    (small, _, _), (large, _, _) = made["gd"]
    assert sum(p.numel() for p in small.module.parameters()) < sum(p.numel() for p in large.module.parameters())
    assert small.path.name == "gd@0.25.pt" and large.path.name == "gd@0.5.pt"
