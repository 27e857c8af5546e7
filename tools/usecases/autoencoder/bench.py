"""Benchmark of prune/ on a non-control network: the dense autoencoder of handwritten digits.

Reads top to bottom. The shipped autoencoder (or one trained here on MNIST IDX files given with
--data) is pruned through ``prune.api.prune`` with the groups of ``find_groups`` (components encoder
and decoder, bottleneck code and output protected). The objective is the per-image PSNR on the
validation split; every number reported as a result is measured on the test split, disjoint from
both the training images and the validation images the searches saw. Two questions, both with
(``re-fit``) and without (``shrink``) the least-squares re-fit of the layers that lost inputs
(fitted on the training images, so it sees neither validation nor test images):

1. quality subject to a budget: test PSNR of each method at each fraction of parameters kept;
2. sparsity subject to quality: the largest parameter reduction whose validation PSNR stays at or
   above the bound (default: unpruned validation PSNR - 1 dB), per method, by bisection over the
   budget; the test PSNR of the model found is reported beside it.

Writes report.json, report.md, psnr_vs_params.png and reconstructions.png (held-out digits:
original | unpruned | each method's pruned reconstruction), and times the unpruned and the
gradient-descent models at batch 1 in torch and onnxruntime (ratios to unpruned). The searches are
cells (:class:`AECell`: method x mode, the budgets or the bisection), run here or on a Ray cluster
through ``tools.scale.run_cells`` (``prune-and-export bench --model autoencoder --executor ray``).

    python -m tools.usecases.autoencoder.bench --out bench_ae
    prune-and-export bench --model autoencoder --out bench_ae
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from rich.console import Console

from export import ControllerSpec, export_onnx, move_into_place
from prune import PruneError, PruneResult, prune, prune_budgets
from tools.bench.folder import temp_dir_for
from tools.bench.latency import Call, measure_python
from tools.errors import ToolsError
from tools.pipeline.prune import band_tolerance
from tools.scale import Cell, Executor, run_cells, sweep
from tools.usecases.autoencoder.digits import DigitSplits, load
from tools.usecases.autoencoder.model import (
    Autoencoder,
    autoencoder_groups,
    linear_widths,
    load_autoencoder,
    mean_psnr,
    psnr,
    psnr_objective,
    reconstruct_images,
)
from tools.usecases.autoencoder.report import plot_psnr_vs_params, plot_reconstructions, print_tables, write_markdown
from tools.usecases.autoencoder.results import (
    BUDGETS,
    METHODS,
    MODES,
    N_IMAGES,
    SCHEMA,
    SMALLEST_KEEP,
    UNIFORM,
    AEBenchConfig,
    AEReport,
    BoundRow,
    BudgetRow,
    LatencyRow,
)
from tools.usecases.autoencoder.train import TrainConfig, train


def prune_ae(
    model: Autoencoder, groups, data: DigitSplits, label: str, keep: float, refit: bool, cfg: AEBenchConfig
) -> PruneResult:
    """One method at one budget through prune.api.prune, judged on validation PSNR (per image)."""
    return prune(model, groups, keep, psnr_objective(data.val), **_search_options(groups, data, label, refit, cfg))


def prune_ae_budgets(
    model: Autoencoder, groups, data: DigitSplits, label: str, refit: bool, cfg: AEBenchConfig
) -> dict[float, PruneResult]:
    """One method at every budget of ``cfg`` as one continuation (largest first, each search starting from the
    previous budget's best points) through prune.prune_budgets, judged on validation PSNR (per image)."""
    keeps = sorted(cfg.keeps, reverse=True)
    options = _search_options(groups, data, label, refit, cfg)
    results = prune_budgets(model, groups, keeps, psnr_objective(data.val), **options)
    return dict(zip(keeps, results))


def _search_options(groups, data: DigitSplits, label: str, refit: bool, cfg: AEBenchConfig) -> dict:
    """The keyword arguments prune and prune_budgets share for one method of the bench."""
    method, metric = METHODS[label]
    return {
        "method": method,
        "metric": metric or cfg.metric,
        "states": data.train,
        "seed": cfg.seed,
        "tolerance": band_tolerance(groups, cfg.tolerance)[0],
        "max_evaluations": cfg.max_evaluations,
        "reconstruct": refit,
    }


def budget_row(result: PruneResult, label: str, refit: bool, data: DigitSplits, base: dict) -> BudgetRow:
    """Measure a pruned autoencoder on the test split."""
    test = mean_psnr(result.model, data.test)
    return BudgetRow(
        label,
        result.metric,
        MODES[refit],
        result.search.keep,
        result.search.keep_fraction,
        result.search.feasible,
        result.after.params,
        result.after.params / base["params"],
        result.after.macs,
        linear_widths(cast(Autoencoder, result.model)),
        result.search.component_coefficients,
        result.objective_after,
        test,
        test - base["test_psnr"],
        result.search.evaluations,
        result.search.seconds,
        result.search.metric_trials,
    )


def largest_reduction(
    model: Autoencoder, groups, data: DigitSplits, label: str, refit: bool, bound: float, cfg: AEBenchConfig, base: dict
) -> tuple[BoundRow, PruneResult | None]:
    """Bisection over the budget for the smallest keep whose pruned model keeps validation PSNR >= bound."""
    start, tried = time.perf_counter(), []

    def attempt(keep: float) -> PruneResult | None:
        try:
            r = prune_ae(model, groups, data, label, keep, refit, cfg)
        except PruneError:  # no candidate inside the budget band (e.g. the grid at a tiny budget): counts as broken
            tried.append([keep, None])
            return None
        tried.append([keep, r.objective_after])
        return r if r.search.feasible and r.objective_after >= bound else None

    lo, hi, best = SMALLEST_KEEP, 1.0, None
    low = attempt(lo)
    if low is not None:
        hi, best = lo, low
    else:
        for _ in range(cfg.bisection_steps):
            mid = round(0.5 * (lo + hi), 4)
            r = attempt(mid)
            if r is not None:
                hi, best = mid, r
            else:
                lo = mid
    if best is None:
        row = BoundRow(
            label,
            MODES[refit],
            bound,
            False,
            1.0,
            1.0,
            base["params"],
            0.0,
            base["val_psnr"],
            base["test_psnr"],
            True,
            tried,
            time.perf_counter() - start,
        )
        return row, None
    test = mean_psnr(best.model, data.test)
    holds = test >= base["test_psnr"] - (base["val_psnr"] - bound)
    row = BoundRow(
        label,
        MODES[refit],
        bound,
        True,
        hi,
        best.search.keep_fraction,
        best.after.params,
        1.0 - best.after.params / base["params"],
        best.objective_after,
        test,
        holds,
        tried,
        time.perf_counter() - start,
    )
    return row, best


def checks(rows: list[BudgetRow], keeps) -> dict[str, bool]:
    """The issue's acceptance criterion: gd above every uniform baseline on test PSNR, per budget and mode."""
    by = {(r.method, r.keep, r.mode): r for r in rows}
    out = {}
    for mode in MODES.values():
        for keep in keeps:
            gd = by.get(("gd", keep, mode))
            uni = [by[(m, keep, mode)] for m in UNIFORM if (m, keep, mode) in by]
            if gd is not None and uni:
                out[f"gd_beats_uniform_test_{keep}_{mode}"] = all(gd.test_psnr > u.test_psnr for u in uni)
    return out


BUDGETS_PART, BOUND_PART = "budgets", "bound"  # what a cell solves: the budgets as one continuation, or the bisection


@dataclass(frozen=True)
class AECell:
    """One bench cell's work, run wherever the executor puts it (:class:`tools.scale.Cell`: a method at a seed;
    ``options``: ``refit``, and ``part``, the budgets as one continuation or the bisection for the bound).

    It carries the model, its groups, the images and the unpruned measurements themselves, so a worker needs
    nothing but the code. Budgets give {keep: PruneResult} (the models come back), the bisection its BoundRow.
    """

    model: Autoencoder
    groups: Any  # prune.PruneGroups of ``model``
    data: DigitSplits
    cfg: AEBenchConfig
    bound: float
    base: dict

    def __call__(self, cell: Cell) -> dict[float, PruneResult] | BoundRow:
        torch.manual_seed(cell.seed)  # process-wide settings do not travel with the cell: set as run_bench sets them
        torch.set_num_threads(1)
        cfg = replace(self.cfg, seed=cell.seed)
        refit = bool(cell.options["refit"])
        if cell.options["part"] == BUDGETS_PART:
            return prune_ae_budgets(self.model, self.groups, self.data, cell.method, refit, cfg)
        return largest_reduction(self.model, self.groups, self.data, cell.method, refit, self.bound, cfg, self.base)[0]


def ae_cells(cfg: AEBenchConfig) -> list[Cell]:
    """Every cell of the bench: per mode (shrink, re-fit) one budgets cell per method, then the same for the bound."""
    return [
        cell
        for part in (BUDGETS_PART, BOUND_PART)
        for refit in (False, True)
        for cell in sweep(cfg.methods, [max(cfg.keeps)], [cfg.seed], refit=refit, part=part)
    ]


def measure_latency(models: dict[str, torch.nn.Module], dim: int, cfg: AEBenchConfig) -> list[LatencyRow]:
    """Batch-1 latency in torch eager and onnxruntime (exported with export.onnx_export, parity-checked), one thread."""
    import onnxruntime as ort

    spec = ControllerSpec(
        dim,
        dim,
        (0.0,) * dim,
        (1.0,) * dim,
        (0.0,) * dim,
        (1.0,) * dim,
        env_id="digits-autoencoder",
        input_name="image",
        output_name="reconstruction",
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    calls: dict[str, dict[str, Call]] = {}
    for name, module in models.items():
        onnx_model, _ = export_onnx(module, spec, n_parity=200, seed=cfg.seed)
        sess = ort.InferenceSession(onnx_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])

        def torch_eager(o: np.ndarray, module=module):
            with torch.no_grad():
                return module(torch.from_numpy(o[None, :]))

        def onnxruntime_call(o: np.ndarray, sess=sess):
            return sess.run(None, {"image": o[None, :]})

        calls[name] = {"torch": torch_eager, "onnxruntime": onnxruntime_call}
    obs = spec.sample_observations(cfg.latency_calls, cfg.seed)
    stats = measure_python(calls, obs, cfg.latency_rounds, warmup=200)
    return [
        LatencyRow(m, r, s.median_us, s.p99_us, s.median_us / stats[("unpruned", r)].median_us, s.n)
        for (m, r), s in stats.items()
    ]


def run_bench(
    cfg: AEBenchConfig, console: Console, command: str = "", executor: Executor | None = None
) -> tuple[AEReport, dict]:
    """Run every measurement; return the report and the images to draw (not written anywhere yet).

    ``executor`` (:mod:`tools.scale`): where the cells (method x mode, budgets and bisection, see :class:`AECell`)
    run (None: here); the report is the same either way, timings aside."""
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(1)  # small dense layers: one thread is fastest, and the machine is shared
    console.print(f"bench autoencoder, seed {cfg.seed}")
    data = load(cfg.data, cfg.seed)
    if cfg.autoencoder:
        model, meta = load_autoencoder(cfg.autoencoder)
    elif cfg.data is None:
        model, meta = load_autoencoder()
    else:
        console.print(f"training an autoencoder on {data.summary()} for {cfg.train_epochs} epochs (seed {cfg.seed})")
        model, meta = train(data, TrainConfig(seed=cfg.seed, epochs=cfg.train_epochs), progress=False)
    if model.encoder[0].in_features != data.dim:
        raise ToolsError(
            f"autoencoder takes {model.encoder[0].in_features} pixels but the images have {data.dim} ({data.source})"
        )
    groups = autoencoder_groups(model, cfg.prune_code)
    base: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()),
        "widths": linear_widths(model),
        "val_psnr": mean_psnr(model, data.val),
        "test_psnr": mean_psnr(model, data.test),
        "train_psnr": mean_psnr(model, data.train),
        "mean_image_test_psnr": float(
            psnr(data.test, data.train.mean(0).expand_as(data.test)).mean()
        ),  # the no-model baseline
        "groups": groups.names,
        "components": groups.components,
        "protected": groups.protected,
        "model": cfg.autoencoder or ("shipped" if cfg.data is None else "trained here"),
        "meta": meta,
    }
    bound = cfg.min_psnr if cfg.min_psnr is not None else base["val_psnr"] - cfg.psnr_drop
    console.print(
        f"{data.source}: {data.summary()}; unpruned {base['params']} params, PSNR val {base['val_psnr']:.2f} dB, "
        f"test {base['test_psnr']:.2f} dB; bound {bound:.2f} dB on val; groups {groups.names} in {list(groups.components)}"
    )
    report = AEReport(
        SCHEMA,
        command,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        0.0,
        {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        asdict(cfg),
        data.summary(),
        base,
    )
    report.image_keep = min(cfg.keeps, key=lambda k: abs(k - cfg.image_keep))
    shown = data.test[
        torch.linspace(0, len(data.test) - 1, min(N_IMAGES, len(data.test))).long()
    ]  # spread over the split
    images = {"original": shown, "unpruned": reconstruct_images(model, shown)}
    gd_models: dict[str, torch.nn.Module] = {}
    widened = band_tolerance(groups, cfg.tolerance)[1]
    if widened:
        report.notes.append(widened)
        console.print(f"note: {widened}")
    cells = ae_cells(cfg)
    if executor is not None:
        console.print(
            f"bench cells ({len(cells)}: method x mode, budgets and bound) run on {executor.name} ({executor.workers} workers)"
        )
    results = run_cells(AECell(model, groups, data, cfg, bound, base), cells, executor)
    ran = {(c.options["part"], c.options["refit"], c.method): r for c, r in zip(cells, results)}
    for refit in (False, True):
        for keep in cfg.keeps:
            for label in cfg.methods:
                result = cast(dict, ran[(BUDGETS_PART, refit, label)])[keep]
                row = budget_row(result, label, refit, data, base)
                report.rows.append(row)
                console.print(
                    f"{row.mode:6s} keep {keep:.2f} {label:10s} {row.metric:12s} PSNR val {row.val_psnr:6.2f} test "
                    f"{row.test_psnr:6.2f} dB ({row.test_drop_db:+.2f}) params {row.params:6d} evals {row.evaluations:3d} "
                    f"{row.seconds:5.1f}s enc/dec c {row.coefficients}"
                )
                if keep == report.image_keep:
                    images[f"{label}\n{row.mode}"] = reconstruct_images(result.model, shown)
                if refit and label == "gd":
                    gd_models[f"gd@{keep}"] = result.model
    for refit in (False, True):
        for label in cfg.methods:
            bound_row = cast(BoundRow, ran[(BOUND_PART, refit, label)])
            report.bounds.append(bound_row)
            console.print(
                f"bound {bound:.2f} dB {bound_row.mode:6s} {label:10s}: keep {bound_row.keep:.4f}, reduction {bound_row.reduction:.1%}, "
                f"PSNR val {bound_row.val_psnr:.2f} test {bound_row.test_psnr:.2f} ({len(bound_row.tried)} tries, {bound_row.seconds:.1f}s)"
            )
    if cfg.latency_calls:
        report.latency = measure_latency({"unpruned": model, **gd_models}, data.dim, cfg)
    report.checks = checks(report.rows, cfg.keeps)
    report.notes.append("PSNR only: no maintained SSIM implementation is a dependency of the project.")
    report.seconds = time.perf_counter() - t0
    return report, images


def write_report(report: AEReport, images: dict, folder: Path) -> None:
    """report.json, report.md and the two PNGs into ``folder`` (which must exist)."""
    report.files = {
        "json": "report.json",
        "markdown": "report.md",
        "psnr_vs_params": "psnr_vs_params.png",
        "reconstructions": "reconstructions.png",
    }
    plot_psnr_vs_params(report, folder / report.files["psnr_vs_params"])
    plot_reconstructions(report, images, folder / report.files["reconstructions"])
    (folder / "report.json").write_text(json.dumps(report.to_dict(), indent=2, allow_nan=True) + "\n")
    write_markdown(report, folder / "report.md")


def run_into(
    cfg: AEBenchConfig, out: Path, force: bool, console: Console, command: str, executor: Executor | None = None
) -> AEReport:
    """Run the bench (its cells on ``executor``, None: here) and write its folder atomically (temp folder beside
    ``out``, renamed into place)."""
    tmp = temp_dir_for(out, force)
    try:
        tmp.chmod(0o755)
        report, images = run_bench(cfg, console, command, executor)
        write_report(report, images, tmp)
        move_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print_tables(report, console)
    console.print(
        f"report: {out / 'report.md'}, {out / 'report.json'}; plots: {out / 'psnr_vs_params.png'}, {out / 'reconstructions.png'}"
    )
    return report


def quick(cfg: AEBenchConfig) -> AEBenchConfig:
    """A short run for tests: few evaluations, a coarse bisection, few timed calls, two training epochs."""
    cfg.max_evaluations, cfg.bisection_steps, cfg.latency_calls, cfg.latency_rounds, cfg.train_epochs = 12, 2, 50, 1, 2
    return cfg


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tools.usecases.autoencoder.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("bench_ae"), help="report folder to create")
    p.add_argument("--force", action="store_true", help="replace an existing report folder")
    p.add_argument(
        "--autoencoder", default="", help="autoencoder file (default: the shipped one, or trained here with --data)"
    )
    p.add_argument("--data", default=None, help="folder with MNIST IDX files (default: scikit-learn's 8x8 digits)")
    p.add_argument("--keep", type=float, nargs="+", default=list(BUDGETS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--metric", default=AEBenchConfig.metric)
    p.add_argument("--seed", type=int, default=AEBenchConfig.seed)
    p.add_argument("--max-evaluations", type=int, default=AEBenchConfig.max_evaluations)
    p.add_argument(
        "--min-psnr", type=float, default=None, help="reconstruction bound in dB (default: unpruned val PSNR - 1)"
    )
    p.add_argument("--prune-code", action="store_true", help="also prune the bottleneck code")
    p.add_argument("--quick", action="store_true", help="a short run (tests)")
    args = p.parse_args(argv)
    cfg = AEBenchConfig(
        autoencoder=args.autoencoder,
        data=args.data,
        keeps=tuple(args.keep),
        methods=tuple(args.methods),
        metric=args.metric,
        seed=args.seed,
        max_evaluations=args.max_evaluations,
        min_psnr=args.min_psnr,
        prune_code=args.prune_code,
    )
    run_into(
        quick(cfg) if args.quick else cfg,
        args.out,
        args.force,
        Console(width=160),
        " ".join(
            shlex.quote(a)
            for a in ["python", "-m", "tools.usecases.autoencoder.bench", *(argv if argv is not None else sys.argv[1:])]
        ),
    )


if __name__ == "__main__":
    main()
