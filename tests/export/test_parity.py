"""export/parity.py + export_bundle's gate: visited states, --obs-bounds for unbounded dimensions, a tolerance
relative to the action range; a wrong library still fails, and the error names the options and where."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from export import ControllerSpec, ExportError, export_bundle, export_onnx
from export import pipeline as pipeline_mod
from export.parity import OPTIONS_HINT, PARITY_TOLERANCE, compare, parity_gate, thresholds_for
from export.tvm_compile import compile_library
from targets import get_target

# InvertedPendulum-v5's contract: 4 unbounded observations (+-10 stands in for them), one force in [-3, 3]
UNBOUNDED = ControllerSpec(
    4, 1, (-10.0,) * 4, (10.0,) * 4, (-3.0,), (3.0,), env_id="InvertedPendulum-v5", obs_unbounded=(0, 1, 2, 3)
)


def _unsquashed(seed: int = 0, gain: float = 4.0) -> nn.Sequential:
    """A 4-64-64-1 ELU policy with an unclipped linear head (as a PPO mean is): large actions far from balance."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(4, 64), nn.ELU(), nn.Linear(64, 64), nn.ELU(), nn.Linear(64, 1))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(gain)
    return m.eval()


def _visited(n: int = 200) -> np.ndarray:
    """States near balance, as a balancing policy sees them."""
    return np.random.default_rng(1).normal(0.0, 0.05, (n, 4)).astype(np.float32)


def test_box_sampling_at_10_fails_an_absolute_gate_where_visited_states_and_a_relative_one_pass(tmp_path):
    with pytest.raises(ExportError) as e:  # the old gate: the +-10 box and an absolute 1e-5
        export_bundle(_unsquashed(), UNBOUNDED, [get_target("x86_64")], tmp_path / "old", n_parity=1000, tolerance=1e-5)
    msg = str(e.value)
    assert "differs from" in msg and "is box sample" in msg and "of seed 0 [" in msg
    assert "0 visited states + 1000 box samples, tolerance absolute" in msg
    assert "--parity-tolerance" in msg and "--obs-bounds" in msg
    assert not (tmp_path / "old").exists()

    m = export_bundle(
        _unsquashed(),
        UNBOUNDED,
        [get_target("x86_64")],
        tmp_path / "new",
        n_parity=1000,
        parity_observations=_visited(),
    )
    gate = m.onnx["parity_gate"]
    assert gate["visited_states"] == 200 and gate["box_samples"] == 0 and gate["box"] is None
    assert gate["unbounded_dims"] == [0, 1, 2, 3]
    assert gate["tolerance"] == {"relative_to_action_range": PARITY_TOLERANCE, "abs_per_action": [pytest.approx(6e-5)]}
    v = m.artifacts["x86_64"]["verification"]
    assert v["status"] == "verified" and v["n"] == 200 and v["tolerance"] == pytest.approx(6e-5)
    assert 0 < v["max_abs_err"] <= 6e-5 and m.onnx["n_parity"] == 200


def test_a_wrong_library_still_fails_and_the_error_names_the_options_and_where(tmp_path, monkeypatch):
    wrong, _ = export_onnx(_unsquashed(seed=1), UNBOUNDED, n_parity=10, tolerance=1.0)  # other weights, same shapes
    monkeypatch.setattr(
        pipeline_mod,
        "compile_library",
        lambda model, spec, t, path, fast_math: compile_library(wrong, spec, t, path, fast_math=fast_math),
    )
    visited = _visited()
    with pytest.raises(ExportError) as e:
        export_bundle(
            _unsquashed(),
            UNBOUNDED,
            [get_target("x86_64")],
            tmp_path / "b",
            parity_observations=visited,
            parity_tolerance=1e-2,
        )
    msg = str(e.value)
    assert msg.startswith("target 'x86_64': x86_64.so differs from onnxruntime by ")
    assert "on action 0 at observation " in msg and "(> 0.06)" in msg  # 1e-2 of the range 6
    row = int(msg.split("at observation ")[1].split()[0])
    assert f"observation {row} is visited state {row} [" in msg and f"{visited[row, 0]:.4g}" in msg
    assert "200 visited states + 0 box samples, tolerance 0.01 x the action range" in msg and msg.endswith(OPTIONS_HINT)
    assert "--parity-tolerance" in OPTIONS_HINT and "--obs-bounds" in OPTIONS_HINT
    assert not (tmp_path / "b").exists()


def test_obs_bounds_replace_the_box_in_unbounded_dimensions_only():
    spec = ControllerSpec(3, 2, (-1.0, -10.0, -10.0), (1.0, 10.0, 10.0), (-1.0, 0.0), (1.0, 0.5), obs_unbounded=(1, 2))
    gate = parity_gate(spec, 500, 0, obs_bounds=(-0.5, [0.0, 0.5, 2.0]), parity_observations=_visited()[:7, :3])
    assert gate.n_visited == 7 and gate.n_box == 500 and gate.n == 507
    assert gate.box_low == [-1.0, -0.5, -0.5] and gate.box_high == [1.0, 0.5, 2.0]
    box = gate.observations[7:]
    assert box[:, 0].min() < -0.9 and box[:, 0].max() > 0.9  # the bounded dimension keeps its box
    assert box[:, 1].min() >= -0.5 and box[:, 1].max() <= 0.5 and box[:, 2].max() <= 2.0
    np.testing.assert_allclose(gate.thresholds, [2e-5, 5e-6])  # per action: 1e-5 x its range
    assert gate.to_dict()["obs_bounds"] is True


def test_without_visited_states_or_bounds_the_gate_is_the_old_box_and_bounded_envs_keep_passing(pendulum):
    gate = parity_gate(pendulum, 100, 3)
    np.testing.assert_array_equal(gate.observations, pendulum.sample_observations(100, 3))
    assert gate.tolerance == pytest.approx(4e-5) and gate.tolerance >= 1e-5  # never stricter than the old 1e-5 here
    visited = parity_gate(pendulum, 100, 3, parity_observations=_visited()[:, :3])  # bounded: visited + the box
    assert (visited.n_visited, visited.n_box) == (200, 100)
    assert parity_gate(UNBOUNDED, 100, 3, parity_observations=_visited()).n_box == 0  # unbounded: no +-10 box


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (
            {"obs_bounds": (-1.0, 1.0)},
            "--obs-bounds: the observation space of Pendulum-v1 is bounded in every dimension",
        ),
        ({"parity_tolerance": 0.0}, "--parity-tolerance must be a positive fraction of the action range"),
        ({"parity_tolerance": 1e-3, "tolerance": 1e-5}, "not both"),
        ({"parity_observations": np.zeros((5, 4), np.float32)}, "must be a non-empty [n, 3] array, got shape [5, 4]"),
    ],
)
def test_bad_gate_options_are_refused_naming_the_option(pendulum, kwargs, words):
    with pytest.raises(ExportError, match=None) as e:
        parity_gate(pendulum, 10, 0, **kwargs)
    assert words in str(e.value)


def test_bad_bounds_for_unbounded_dimensions_are_refused():
    with pytest.raises(ExportError, match="LOW must be below HIGH"):
        parity_gate(UNBOUNDED, 10, 0, obs_bounds=(1.0, -1.0))
    with pytest.raises(ExportError, match="--obs-bounds: HIGH must be a finite number or 4 finite numbers"):
        parity_gate(UNBOUNDED, 10, 0, obs_bounds=(-1.0, [1.0, 2.0]))


def test_compare_finds_the_worst_error_relative_to_each_actions_threshold():
    ref = np.zeros((3, 2), np.float32)
    got = ref.copy()
    got[1, 0], got[2, 1] = 3e-5, 2e-5  # action 0 has the larger error, action 1 the smaller threshold
    c = compare(got, ref, np.array([4e-5, 1e-5]))
    assert (c.ok, c.action, c.row, c.threshold) == (False, 1, 2, 1e-5) and c.max_abs_err == pytest.approx(3e-5)
    assert compare(got, ref, 4e-5).ok and not compare(got[:2], ref, 1.0).ok
    np.testing.assert_allclose(thresholds_for(UNBOUNDED, None, None), [6e-5])
