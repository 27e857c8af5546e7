"""The autoencoder use case: digits data, IDX reader, groups of the autoencoder, PSNR, and the bench end to end."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
import torch

from prune import keep_indices, masked_copy, score, shrink
from tools.cli import main as cli_main
from tools.errors import ToolsError
from tools.usecases.autoencoder.digits import load_digits, load_mnist, read_idx, write_idx
from tools.usecases.autoencoder.headline import main as headline_main
from tools.usecases.autoencoder.model import (
    Autoencoder,
    autoencoder_groups,
    from_state_dict,
    load_autoencoder,
    mean_psnr,
    psnr,
    save_autoencoder,
)


def _idx_bytes(images: np.ndarray) -> bytes:
    """An IDX3 unsigned-byte file written by hand from the format's definition (not by tools.digits)."""
    n, h, w = images.shape
    return b"\x00\x00\x08\x03" + struct.pack(">III", n, h, w) + images.astype(np.uint8).tobytes()


def test_digits_are_scaled_flattened_and_split_the_same_way_for_the_same_seed():
    a, b, c = load_digits(0), load_digits(0), load_digits(1)
    assert a.side == 8 and a.train.shape[1] == 64 and a.train.dtype == torch.float32
    assert len(a.train) + len(a.val) + len(a.test) == 1797 and len(a.val) == len(a.test) == 300
    assert float(a.train.min()) == 0.0 and float(a.train.max()) == 1.0
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val) and torch.equal(a.test, b.test)
    assert not torch.equal(a.test, c.test)


def test_idx_reader_reads_plain_and_gzip_files(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    (tmp_path / "a").write_bytes(_idx_bytes(images))
    (tmp_path / "a.gz").write_bytes(gzip.compress(_idx_bytes(images)))
    for name in ("a", "a.gz"):
        got = read_idx(tmp_path / name)
        assert got.shape == (3, 28, 28) and got.dtype == np.uint8 and np.array_equal(got, images)
    write_idx(tmp_path / "b.gz", images)  # the fixture writer agrees with the hand-written bytes
    assert gzip.decompress((tmp_path / "b.gz").read_bytes()) == _idx_bytes(images)


def test_idx_reader_names_the_file_and_the_problem(tmp_path):
    good = _idx_bytes(np.zeros((2, 4, 4), np.uint8))
    (tmp_path / "cut").write_bytes(good[:-5])
    with pytest.raises(ToolsError, match=r"cut: .*truncated"):
        read_idx(tmp_path / "cut")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(ToolsError, match="magic: not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-8])
    with pytest.raises(ToolsError, match=r"cut\.gz: cannot read it"):
        read_idx(tmp_path / "cut.gz")
    with pytest.raises(ToolsError, match="absent: not found"):
        read_idx(tmp_path / "absent")


def test_mnist_folder_uses_t10k_as_test_and_reports_a_missing_train_file(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(rng.integers(0, 256, (20, 28, 28)))))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(rng.integers(0, 256, (5, 28, 28))))
    data = load_mnist(tmp_path, seed=0)
    assert data.side == 28 and data.dim == 784 and len(data.test) == 5 and len(data.train) + len(data.val) == 20
    assert float(data.train.max()) <= 1.0 and float(data.train.min()) >= 0.0
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ToolsError, match="no train-images-idx3-ubyte"):
        load_mnist(empty)
    (empty / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((4, 28, 28)))[:-1])
    with pytest.raises(ToolsError, match="train-images-idx3-ubyte: .*truncated"):
        load_mnist(empty)


def test_autoencoder_groups_are_encoder_and_decoder_with_the_code_protected():
    model = Autoencoder(16, (8, 6), 4, (6, 8))
    groups = autoencoder_groups(model)
    assert groups.components == {"encoder": ["encoder.0", "encoder.2"], "decoder": ["decoder.0", "decoder.2"]}
    assert "encoder.4" in groups.protected and "decoder.4" in groups.protected  # code and reconstruction
    with_code = autoencoder_groups(model, prune_code=True)
    assert with_code.components["encoder"] == ["encoder.0", "encoder.2", "encoder.4"]


def test_shrunk_autoencoder_equals_the_masked_one_and_saves_and_loads(tmp_path):
    torch.manual_seed(0)
    model = Autoencoder(16, (8, 6), 4, (6, 8)).eval()
    groups = autoencoder_groups(model)
    keep = keep_indices(
        score(model, groups, "random", seed=3), {"encoder.0": 3, "encoder.2": 2, "decoder.0": 5, "decoder.2": 1}
    )
    small, masked = shrink(model, groups, keep), masked_copy(model, groups, keep)
    x = torch.rand(32, 16)
    assert small.encoder[0].out_features == 3 and small.decoder[2].out_features == 1
    assert torch.allclose(small(x), masked(x), atol=1e-6)
    path = save_autoencoder(small, tmp_path / "small.pt", {"seed": 0})
    loaded, meta = load_autoencoder(path)
    assert meta == {"seed": 0} and torch.equal(loaded(x), small(x))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ToolsError, match="junk.pt: cannot load it"):
        load_autoencoder(tmp_path / "junk.pt")
    with pytest.raises(ToolsError, match="not an autoencoder of 9 inputs"):
        from_state_dict(small.state_dict(), 9)


def test_psnr_of_a_known_pair():
    ref = torch.zeros(2, 64)
    rec = torch.full((2, 64), 0.1)  # MSE 0.01 -> 10 log10(1 / 0.01) = 20 dB
    assert torch.allclose(psnr(ref, rec), torch.tensor([20.0, 20.0], dtype=torch.float64))
    assert float(psnr(ref, ref)[0]) == pytest.approx(100.0)
    with pytest.raises(ToolsError, match="shapes differ"):
        psnr(ref, rec[:, :10])


def test_shipped_autoencoder_loads_weights_only_and_reconstructs_held_out_digits():
    model, meta = load_autoencoder()
    data = load_digits(meta["data"]["seed"])
    assert sum(p.numel() for p in model.parameters()) == 35280
    assert (
        mean_psnr(model, data.test) == pytest.approx(meta["psnr"]["test"], abs=1e-3)
        and mean_psnr(model, data.test) > 20.0
    )


def test_bench_autoencoder_writes_the_report_and_gd_beats_the_uniform_baselines(tmp_path, capsys):
    out = tmp_path / "ae"
    rc = cli_main(
        [
            "bench",
            "--model",
            "autoencoder",
            "--quick",
            "--keep",
            "0.5",
            "--methods",
            "gd,uniform-l1,random",
            "--out",
            str(out),
            "--json",
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)  # --json: exactly one JSON object on stdout
    assert printed["ok"] and printed["out"] == str(out)
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "psnr_vs_params.png", "reconstructions.png"}
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "prune-and-export.bench-autoencoder/1"
    assert {(r["method"], r["mode"]) for r in report["rows"]} == {
        (m, mode) for m in ("gd", "uniform-l1", "random") for mode in ("shrink", "re-fit")
    }
    assert all(r["params"] < report["unpruned"]["params"] for r in report["rows"])
    assert len(report["bounds"]) == 6 and all(b["val_psnr"] >= b["min_psnr"] for b in report["bounds"])
    assert report["checks"] == {"gd_beats_uniform_test_0.5_shrink": True, "gd_beats_uniform_test_0.5_re-fit": True}
    assert {r["runtime"] for r in report["latency"]} == {"torch", "onnxruntime"}
    assert "largest parameter reduction" in (out / "report.md").read_text()


def test_bench_autoencoder_trains_on_mnist_idx_files_and_refuses_controller_flags(tmp_path, capsys):
    rng = np.random.default_rng(2)
    data = tmp_path / "mnist"
    data.mkdir()
    (data / "train-images-idx3-ubyte").write_bytes(_idx_bytes(rng.integers(0, 256, (60, 28, 28))))
    out = tmp_path / "ae"
    rc = cli_main(
        [
            "bench",
            "--model",
            "autoencoder",
            "--quick",
            "--data",
            str(data),
            "--keep",
            "0.5",
            "--methods",
            "uniform-l1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["side"] == 28 and report["unpruned"]["widths"]["decoder"][-1] == 784
    assert cli_main(["bench", "--model", "autoencoder", "--targets", "cortex-m4", "--out", str(tmp_path / "x")]) == 2
    assert "--targets" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_headline_quick_writes_the_schema_and_a_looser_bound_allows_at_least_the_same_reduction(tmp_path):
    out = tmp_path / "headline.json"
    headline_main(["--quick", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["schema"] == "prune-and-export.autoencoder-headline/1" and "70%" in report["paper"]
    rows = {(r["bound_db"], r["method"]): r for r in report["rows"]}
    assert set(rows) == {(1.0, "gd"), (2.0, "gd")}
    unpruned = report["unpruned"]
    for (bound, _), row in rows.items():
        assert row["floor_db"] == pytest.approx(unpruned["val_psnr"] - bound)
        assert row["found"] and row["val_psnr"] >= row["floor_db"] and 0.0 < row["reduction"] < 1.0
        assert row["reduction"] == pytest.approx(1.0 - row["params"] / unpruned["params"])
        assert {p["keep"] for p in row["sweep"] if not p["refined"]} == {0.5, 0.2}
        assert (
            set(row["widths"]) == {"encoder", "decoder"} and row["widths"]["encoder"][-1] == 16
        )  # the code is protected
    assert rows[(2.0, "gd")]["reduction"] >= rows[(1.0, "gd")]["reduction"]


def test_headline_bisects_down_from_the_unpruned_model_when_no_swept_budget_meets_the_bound(tmp_path):
    out = tmp_path / "headline.json"
    headline_main(["--quick", "--no-finetune", "--bounds", "1", "--out", str(out)])
    (row,) = json.loads(out.read_text())["rows"]
    swept, refined = [p for p in row["sweep"] if not p["refined"]], [p for p in row["sweep"] if p["refined"]]
    assert [(p["keep"], p["feasible"]) for p in swept] == [
        (0.5, False),
        (0.2, False),
    ]  # without the fine-tune 50% kept breaks 1 dB
    assert [p["keep"] for p in refined] == [0.75] and refined[0]["feasible"]
    assert row["found"] and row["keep"] == 0.75 and row["val_psnr"] >= row["floor_db"]
