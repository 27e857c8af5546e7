"""bench: one quick run end to end (schema, every figure finite and consistent), and bad input refused in one line."""

import argparse
import json
import math

import numpy as np
import pytest
import torch

from tools.cli import bench as cmd_bench
from tools.cli import main as cli_main
from tools.controllers.load import load_controller
from tools.pipeline.choices import SWEEP
from tools.pipeline.hil import FIDELITY

EPISODES = 2
RUNTIMES = {"torch", "onnxruntime", "tvm-python", "stub"}


def _numbers(value, path="$"):
    """Every number in a JSON value, with where it sits."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, (int, float)):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{path}[{i}]")


@pytest.fixture(scope="module")
def quick(tmp_path_factory, cli):
    out = tmp_path_factory.mktemp("bench") / "report"
    proc = cli(
        "bench",
        "--quick",
        "--episodes",
        str(EPISODES),
        "--methods",
        "gd",
        "--targets",
        "x86_64,cortex-a72",
        "--out",
        str(out),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout), proc.stderr


def test_quick_bench_report_has_the_schema_and_only_finite_measured_numbers(quick):
    out, result, stderr = quick
    report = json.loads((out / "report.json").read_text())
    assert {k: v for k, v in result.items() if k not in ("ok", "out")} == report
    assert result["ok"] is True
    assert report["schema"] == "prune-and-export.bench/1"
    for key in ("machine", "versions", "seeds", "config", "models", "latency", "reward", "files", "command"):
        assert report[key], key
    bad = [(p, v) for p, v in _numbers(report) if not math.isfinite(v)]
    assert not bad, bad
    assert report["seeds"]["episodes"] == list(range(EPISODES))
    assert "seed 0" in stderr and "memory" in stderr and "closed-loop return" in stderr

    models = {m["label"]: m for m in report["models"]}
    assert set(models) == {"unpruned", "gd@0.25"}
    for label, m in models.items():  # memory figures agree with the files the run wrote
        module = (
            load_controller(out / "models" / f"{label}.pt").module if label != "unpruned" else load_controller().module
        )
        assert m["params"] == sum(p.numel() for p in module.parameters())
        assert m["weight_bytes"] == 4 * m["params"]
        assert m["macs"] == sum(
            layer.in_features * layer.out_features for layer in module.modules() if isinstance(layer, torch.nn.Linear)
        )
        manifest = json.loads((out / "bundles" / label / "manifest.json").read_text())
        assert m["onnx_bytes"] == manifest["onnx"]["bytes"] == (out / "bundles" / label / "model.onnx").stat().st_size
        assert m["library_bytes"] == {t: manifest["artifacts"][t]["bytes"] for t in ("x86_64", "cortex-a72")}
        assert all(kb > 0 for kb in m["stub_peak_rss_kb"].values())
    assert models["gd@0.25"]["params"] < 0.3 * models["unpruned"]["params"]


def test_quick_bench_latency_rows_cover_every_runtime_and_hide_emulated_times(quick):
    _, report, _ = quick
    rows = report["latency"]
    native = {(r["model"], r["runtime"]) for r in rows if r["target"] == "x86_64"}
    assert native == {(m, rt) for m in ("unpruned", "gd@0.25") for rt in RUNTIMES}
    by = {(r["model"], r["runtime"], r["target"]): r for r in rows}
    for r in rows:
        assert r["n"] > 0 and r["spread"] >= 0
        if r["emulated"]:
            assert r["target"] == "cortex-a72" and "qemu" in r["runner"]
            assert r["median_us"] is None and r["p99_us"] is None and r["max_us"] is None
        else:
            assert 0 < r["median_us"] <= r["p99_us"] <= r["max_us"]
            base = by[("unpruned", r["runtime"], r["target"])]
            assert r["ratio_to_unpruned"] == pytest.approx(r["median_us"] / base["median_us"])
    assert {r["target"] for r in rows if r["emulated"]} == {"cortex-a72"}


def test_quick_bench_rewards_are_paired_on_the_same_seeds_and_the_stub_tracks_torch(quick):
    _, report, _ = quick
    rows = {(r["model"], r["runtime"]): r for r in report["reward"]}
    assert set(rows) == {(m, rt) for m in ("unpruned", "gd@0.25") for rt in ("torch", "stub:x86_64", "stub:cortex-a72")}
    for (model, runtime), r in rows.items():
        s = r["stats"]
        assert s["seeds"] == list(range(EPISODES)) and len(s["returns"]) == len(s["upright"]) == EPISODES
        assert s["mean"] == pytest.approx(np.mean(s["returns"])) and s["worst"] == min(s["returns"])
        assert s["upright_share"] == pytest.approx(np.mean(s["upright"]))
        if runtime != "torch":
            torch_returns = rows[(model, "torch")]["stats"]["returns"]
            assert np.max(np.abs(np.subtract(s["returns"], torch_returns))) <= FIDELITY
            assert r["vs_torch_max_abs"] <= FIDELITY
        if model == "unpruned":
            assert r["vs_unpruned"] is None
        else:
            diff = np.subtract(s["returns"], rows[("unpruned", runtime)]["stats"]["returns"])
            assert r["vs_unpruned"]["mean_diff"] == pytest.approx(diff.mean())
            assert r["vs_unpruned"]["stderr"] == pytest.approx(diff.std(ddof=1) / np.sqrt(EPISODES))


def test_quick_bench_writes_markdown_and_plots_and_nothing_else_beside_the_folder(quick):
    out, report, _ = quick
    md = (out / "report.md").read_text()
    assert "| model | runtime |" in md and "gd@0.25" in md and "return_vs_params.png" in md
    for name in ("return_vs_params.png", "latency.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in out.parent.iterdir()] == [out.name], "the temp folder was renamed, not left behind"


def _one_line_error(capsys, *argv: str) -> str:
    """Run the CLI in this process (no interpreter start-up); it must exit 2 with one line on stderr, nothing on stdout."""
    try:
        code = cli_main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "", err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--targets", "x86_64,nosuch"], ["unknown target 'nosuch'"]),
        (["--keep", "1.5"], ["--keep", "1.5"]),
        (["--methods", "gd,bogus"], ["--methods", "bogus"]),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, fragments):
    err = _one_line_error(capsys, "bench", *args, "--out", str(tmp_path / "report"))
    assert all(f in err for f in fragments), err
    assert list(tmp_path.iterdir()) == []


def test_unwritable_or_occupied_out_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = _one_line_error(capsys, "bench", "--quick", "--out", str(blocker / "report"))
    assert str(blocker / "report") in err and "cannot write" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert "not empty" in _one_line_error(capsys, "bench", "--quick", "--out", str(tmp_path / "full"))
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "full"]


def _config(*argv: str):
    parser = argparse.ArgumentParser()
    cmd_bench.configure(parser)
    return cmd_bench.config_from_args(parser.parse_args([*argv, "--out", "unused"]))


def test_sweep_adds_its_budgets_to_keep_and_quick_shortens_the_episodes():
    assert _config().keeps == [0.25] and _config().episodes == 100
    config = _config("--keep", "0.3", "--sweep", "--quick", "--targets", "x86_64", "cortex-a72")
    assert config.keeps == sorted({0.3, *SWEEP}, reverse=True)
    assert config.episodes == cmd_bench.QUICK_EPISODES
    assert config.targets == ["x86_64", "cortex-a72"]
    assert _config("--quick", "--episodes", "7").episodes == 7


def test_microcontroller_targets_are_accepted_beside_linux_ones():
    assert _config("--targets", "x86_64,cortex-m4", "cortex-m4-256k").targets == [
        "x86_64",
        "cortex-m4",
        "cortex-m4-256k",
    ]


def test_quick_bench_on_a_256k_part_reports_that_only_the_pruned_firmware_fits(tmp_path, cli):
    """Issue 9: the unpruned reference overflows a 256 KB-flash / 64 KB-RAM part, the 10% one fits and runs in the loop."""
    out = tmp_path / "report"
    proc = cli(
        "bench",
        "--quick",
        "--episodes",
        str(EPISODES),
        "--methods",
        "gd",
        "--keep",
        "0.1",
        "--targets",
        "x86_64,cortex-m4-256k",
        "--out",
        str(out),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert not [(p, v) for p, v in _numbers(report) if not math.isfinite(v)]
    rows = {r["model"]: r for r in report["mcu_memory"]}
    assert set(rows) == {"unpruned", "gd@0.1"} and {r["target"] for r in rows.values()} == {"cortex-m4-256k"}
    for r in rows.values():
        assert (r["flash_budget_bytes"], r["ram_budget_bytes"]) == (256 * 1024, 64 * 1024)
        assert r["fits"] == (r["flash_bytes"] <= r["flash_budget_bytes"] and r["ram_bytes"] <= r["ram_budget_bytes"])
        assert r["flash_bytes"] > r["weights_bytes"] and r["ram_bytes"] >= r["stack_bytes"] + r["arena_bytes"]
        assert r["cycles_per_inference"] is None  # qemu counts instructions, not cycles
    models = {m["label"]: m for m in report["models"]}
    big, small = rows["unpruned"], rows["gd@0.1"]
    assert not big["fits"] and big["flash_bytes"] > big["flash_budget_bytes"] and "does not fit" in big["reason"]
    assert big["instructions_per_inference"] is None and big["firmware_bytes"] is None
    assert big["weights_bytes"] >= models["unpruned"]["weight_bytes"]
    assert not (out / "bundles" / "unpruned-cortex-m4-256k").exists()
    assert small["fits"] and small["verification"] == "verified" and small["reason"] == ""
    manifest = json.loads((out / "bundles" / "gd@0.1-cortex-m4-256k" / "manifest.json").read_text())
    rec = manifest["artifacts"]["cortex-m4-256k"]
    assert (small["flash_bytes"], small["ram_bytes"], small["firmware_bytes"]) == (
        rec["flash_bytes"],
        rec["ram_bytes"],
        rec["bytes"],
    )
    assert small["instructions_per_inference"] == rec["instructions_per_inference"]
    assert small["instructions_per_inference"]["mean"] >= models["gd@0.1"]["macs"]  # at least one per multiply-add
    # the Linux bundle's sizes stay per Linux target; the firmware is not a library
    assert set(models["gd@0.1"]["library_bytes"]) == set(models["gd@0.1"]["stub_peak_rss_kb"]) == {"x86_64"}

    reward = {(r["model"], r["runtime"]): r for r in report["reward"]}
    assert ("unpruned", "firmware:cortex-m4-256k") not in reward  # no firmware, nothing in the loop
    fw = reward[("gd@0.1", "firmware:cortex-m4-256k")]
    torch_returns = reward[("gd@0.1", "torch")]["stats"]["returns"]
    assert np.max(np.abs(np.subtract(fw["stats"]["returns"], torch_returns))) <= FIDELITY
    assert fw["vs_unpruned"] is None  # nothing to pair with on that part
    assert {r["target"] for r in report["latency"]} == {"x86_64"}  # the firmware has no latency, only instructions

    md = (out / "report.md").read_text()
    assert "## Microcontroller memory" in md and "NO (does not fit)" in md and "mcu_memory.png" in md
    assert (out / "mcu_memory.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "microcontroller firmware" in proc.stderr and "unpruned does not fit cortex-m4-256k" in proc.stderr
