"""``--quantize`` and ``--flash-budget`` on prune, run and bench: parsed at the door, passed to prune's precision
search, reported per component, and carried as int8 weights by the written controller and its ONNX."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from export import export_onnx
from prune import Int8Linear, bytes_footprint
from tools.cli import main
from tools.cli.options import byte_size
from tools.controllers.load import load_controller
from tools.controllers.native import build_mlp, mlp_architecture, pendulum_spec, save_controller

torch.set_num_threads(1)
SEARCH = ["--method", "gd", "--max-evaluations", "8", "--search-episodes", "4", "--judge-episodes", "2", "--json"]


def small_controller(path, hidden=(24, 24)):
    torch.manual_seed(0)
    m = build_mlp(pendulum_spec(), list(hidden), "tanh")
    save_controller(path, m, pendulum_spec(), mlp_architecture(m, "tanh"))
    return path, m


@pytest.mark.parametrize(
    "text, value", [("65536", 65536), ("64k", 65536), ("64K", 65536), ("1M", 1 << 20), ("64kB", 65536)]
)
def test_flash_budget_takes_bytes_and_k_m_suffixes(text, value):
    assert byte_size(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "64q", "1.5k", "k", "", "64 k", "²"])
def test_flash_budget_refuses_what_is_not_a_positive_byte_count(text):
    with pytest.raises(argparse.ArgumentTypeError, match="positive number of bytes"):
        byte_size(text)


@pytest.mark.parametrize("command", [["prune"], ["run"], ["bench", "--out", "never"]])
def test_a_bad_flash_budget_is_one_line_naming_the_flag(cli, assert_one_line_error, command, tmp_path):
    proc = cli(*command, "--flash-budget", "64q")
    assert_one_line_error(proc, "--flash-budget", "64q")
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("command", [["prune"], ["bench", "--out", "never-made"]])
def test_quantize_auto_needs_a_flash_budget(cli, assert_one_line_error, command):
    assert_one_line_error(cli(*command, "--quantize", "auto"), "--quantize auto", "--flash-budget")


def test_auto_under_a_budget_the_float_model_misses_quantizes_and_says_why(tmp_path, capsys):
    src, float_model = small_controller(tmp_path / "c.pt")
    budget = bytes_footprint(float_model) // 2  # keep 1: no pruning, so only int8 can make it fit
    out = tmp_path / "q.pt"
    code = main(
        ["prune", "--controller", str(src), "--keep", "1", "--quantize", "auto", "--flash-budget", str(budget)]
        + ["--out", str(out), *SEARCH]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    d = json.loads(captured.out)
    q = d["quantization"]
    assert d["feasible"] and q["fits"] and q["mode"] == "auto" and q["flash_budget"] == budget
    assert d["weight_bytes"] == q["weight_bytes"] <= budget
    assert q["int8"] and set(q["int8"]) | set(q["float"]) == set(d["precision"])
    for row in q["components"]:
        assert row["precision"] == d["precision"][row["component"]] and row["why"]
        if row["precision"] == "int8":
            assert row["why"].startswith("int8: rank") and row["bytes_saved"] > 0 and "loss_per_byte" in row
    assert [a["chosen"] for a in q["assignments"]].count(True) == 1
    assert not next(a for a in q["assignments"] if not a["int8"])["feasible"]  # all float does not fit
    assert "--quantize auto" in captured.err and "fits" in captured.err  # the table says it too
    loaded = load_controller(out)
    assert bytes_footprint(loaded.module) == d["weight_bytes"]
    assert any(isinstance(m, Int8Linear) for m in loaded.module.modules())


def test_int8_writes_a_controller_whose_onnx_carries_int8_weights(tmp_path, capsys):
    src, _ = small_controller(tmp_path / "c.pt")
    out = tmp_path / "q.pt"
    code = main(["prune", "--controller", str(src), "--keep", "0.5", "--quantize", "int8", "--out", str(out), *SEARCH])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    d = json.loads(captured.out)
    assert set(d["precision"].values()) == {"int8"} and d["quantization"]["float"] == []
    loaded = load_controller(out)
    linears = [m for m in loaded.module if isinstance(m, Int8Linear | torch.nn.Linear)]
    assert linears and all(isinstance(m, Int8Linear) for m in linears)
    assert loaded.architecture["int8"] == list(range(len(linears)))
    assert bytes_footprint(loaded.module) == d["weight_bytes"]
    model, report = export_onnx(loaded.module, loaded.spec, n_parity=50)
    assert "DequantizeLinear" in {n.op_type for n in model.graph.node}
    assert sum(t.data_type == 3 for t in model.graph.initializer) == len(linears)  # TensorProto.INT8
    assert report.parity_max_abs_err <= 1e-5


def test_a_flash_budget_alone_is_a_budget_in_bytes(tmp_path, capsys):
    src, float_model = small_controller(tmp_path / "c.pt")
    budget = bytes_footprint(float_model) // 3
    code = main(["prune", "--controller", str(src), "--flash-budget", str(budget), "--tolerance", "0.1", *SEARCH])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    d = json.loads(captured.out)
    assert d["budget_in_bytes"] and d["quantization"]["mode"] == "off"
    assert d["weight_bytes"] <= budget and set(d["precision"].values()) == {"float"}
    assert "of prunable bytes" in captured.err


def test_bench_and_run_pass_the_precision_to_the_bench_config():
    from tools.cli import bench, run

    p = argparse.ArgumentParser()
    bench.configure(p)
    config = bench.config_from_args(p.parse_args(["--out", "x", "--quantize", "int8", "--flash-budget", "48k"]))
    assert (config.quantize, config.flash_budget) == ("int8", 48 * 1024)
    assert config.to_dict()["quantize"] == "int8"
    r = argparse.ArgumentParser()
    run.configure(r)
    given = vars(r.parse_args(["--quantize", "auto", "--flash-budget", "64k"]))
    assert (given["quantize"], given["flash_budget"]) == ("auto", 65536)


def test_export_quantize_int8_ships_int8_weights_without_a_search(tmp_path, capsys):
    src, float_model = small_controller(tmp_path / "c.pt")
    out = tmp_path / "bundle"
    code = main(["export", "--controller", str(src), "--quantize", "int8", "--parity-samples", "50", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert "DequantizeLinear" in manifest["onnx"]["op_types"]
    arch = manifest["source"]["architecture"]
    assert arch["int8"] == [0, 1, 2] and arch["int8_weights"] == 3 and arch["hidden"] == [24, 24]
    assert arch["weight_bytes"] < bytes_footprint(float_model) / 2  # a tiny model: scales and biases weigh
    assert manifest["artifacts"]["x86_64"]["verification"]["status"] == "verified"
