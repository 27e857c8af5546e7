"""python -m tools.bench.mcu: firmware flash, RAM and instructions per inference, against a baseline given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import tools.bench.mcu as mcu_bench
from tools.controllers.native import build_mlp, mlp_architecture, pendulum_spec, save_controller


def _controller(tmp_path: Path, name: str, hidden: list[int]) -> Path:
    torch.manual_seed(len(hidden) + hidden[0])
    module = build_mlp(pendulum_spec(), hidden, "elu").eval()
    path = tmp_path / f"{name}.pt"
    save_controller(path, module, pendulum_spec(), mlp_architecture(module, "elu"))
    return path


def test_mcu_bench_reports_instructions_against_the_baseline(tmp_path: Path) -> None:
    ref, small = _controller(tmp_path, "ref", [24, 16]), _controller(tmp_path, "small", [8, 8])
    argv = ["--controller", str(ref), "--pruned", str(small), "--baseline", "100000,50000"]
    assert mcu_bench.main([*argv, "--n-parity", "20", "--out", str(tmp_path / "mcu.json")]) == 0
    rows = {r["model"]: r for r in json.loads((tmp_path / "mcu.json").read_text())["rows"]}
    assert set(rows) == {"unpruned", "pruned-small"}
    for model, base in (("unpruned", 100000), ("pruned-small", 50000)):
        r = rows[model]
        assert r["verification"] == "verified" and r["flash_bytes"] > r["weights_bytes"] > 0
        assert r["instructions_over_baseline"] == pytest.approx(r["instructions_per_inference"]["mean"] / base)
    assert (
        rows["pruned-small"]["instructions_per_inference"]["mean"]
        < rows["unpruned"]["instructions_per_inference"]["mean"]
    )


def test_mcu_bench_refuses_a_baseline_that_does_not_match_the_models(tmp_path: Path, capsys) -> None:
    assert mcu_bench.main(["--controller", str(_controller(tmp_path, "ref", [8, 8])), "--baseline", "1,2"]) == 2
    assert capsys.readouterr().err.strip() == "bench_mcu: error: --baseline: 2 numbers for 1 models"


def test_mcu_bench_takes_another_env_and_names_a_controller_that_does_not_fit_it(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    policy = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).eval()
    torch.export.save(torch.export.export(policy, (torch.zeros(1, 4),)), tmp_path / "ip.pt2")
    argv = ["--controller", str(tmp_path / "ip.pt2"), "--n-parity", "10", "--out", str(tmp_path / "mcu.json")]
    assert mcu_bench.main(argv) == 2  # the default env, Pendulum-v1, has 3 observations: one line naming the file
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench_mcu: error: ") and "ip.pt2" in err[0], err
    assert mcu_bench.main([*argv, "--env", "InvertedPendulum-v5"]) == 0
    rows = json.loads((tmp_path / "mcu.json").read_text())["rows"]
    assert rows[0]["model"] == "unpruned" and rows[0]["weights_bytes"] > 0
