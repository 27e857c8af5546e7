"""The stub is checked against a reference on non-saturating inputs before it is timed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import tools.bench.latency as latency
from tools.bench.latency import StubMismatch, check_stub, measure_stub
from tools.controllers.native import build_mlp, pendulum_spec


def test_stub_matches_torch_on_non_saturating_inputs(small_bundle: Path, small_controller: torch.nn.Module) -> None:
    check = check_stub(small_bundle, "x86_64", small_controller, n=200)
    assert check.reference == "torch" and check.inputs == 200
    assert 0 <= check.max_error <= check.tolerance


def test_stub_given_another_models_bundle_fails_loudly(small_bundle: Path) -> None:
    torch.manual_seed(1)
    other = build_mlp(pendulum_spec(), [32, 32], "elu").eval()
    with pytest.raises(StubMismatch, match=r"stub check for 'x86_64'.*exceeds the export tolerance"):
        check_stub(small_bundle, "x86_64", other, n=200)


def test_measure_stub_refuses_a_wrong_stub_before_timing(small_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = latency.run_stub_batch
    monkeypatch.setattr(latency, "run_stub_batch", lambda *a, **k: real(*a, **k) + 1e-3)
    timed: list[object] = []
    monkeypatch.setattr(latency, "run_stub_bench", lambda *a, **k: timed.append(a))
    obs = pendulum_spec().sample_observations(50, 0).astype(np.float32)
    with pytest.raises(StubMismatch, match=r"onnxruntime .* exceeds"):
        measure_stub({"m": small_bundle}, "x86_64", obs, rounds=1, warmup=5, check_n=100)
    assert timed == []


def test_measure_stub_records_the_check(small_bundle: Path) -> None:
    obs = pendulum_spec().sample_observations(50, 0).astype(np.float32)
    bench = measure_stub({"m": small_bundle}, "x86_64", obs, rounds=1, warmup=5, check_n=100)["m"]
    assert bench.check is not None and bench.check.reference == "onnxruntime" and bench.check.inputs == 100
    assert bench.check.max_error <= bench.check.tolerance
