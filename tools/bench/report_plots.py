"""The bench report's figures: return vs parameters kept per method, latency bars per runtime and target,
and for microcontroller targets the firmware's flash and RAM against each part's budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tools.bench.report import UNPRUNED, BenchReport
from tools.bench.reward import Paired


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stderr(paired: Paired | None) -> float:
    """The paired difference's standard error (a pruned model always has one: it is paired with the unpruned one)."""
    assert paired is not None, "a pruned model's torch row is paired with the unpruned one"
    return paired.stderr


def plot_return_vs_params(report: BenchReport, path: Path) -> None:
    """Mean return (torch, gymnasium) against the share of parameters kept, one line per method, the unpruned model at 100%.

    Error bars: standard error of the paired difference to the unpruned model (what separates the
    models on the same seeds), not the spread across start states.
    """
    plt = _pyplot()
    torch_rows = {r.model: r for r in report.reward if r.runtime == "torch"}
    base = report.model(UNPRUNED)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    methods = list(dict.fromkeys(m.method for m in report.models if m.method))
    for i, method in enumerate(methods):
        pts = sorted((m.params_kept, m.label) for m in report.models if m.method == method)
        xs = [x * 100 for x, _ in pts] + [100.0]
        ys = [torch_rows[label].stats.mean for _, label in pts] + [torch_rows[UNPRUNED].stats.mean]
        errs = [_stderr(torch_rows[label].vs_unpruned) for _, label in pts] + [0.0]
        ax.errorbar(xs, ys, yerr=errs, fmt="-o", color=f"C{i}", capsize=3, label=method)
        for (_, label), x, y in zip(pts, xs, ys):
            ax.annotate(f"keep {label.split('@')[1]}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.plot([100], [torch_rows[UNPRUNED].stats.mean], "k*", markersize=12, label=f"unpruned ({base.params:,} params)")
    ax.set_xscale("log")
    ticks = sorted({round(m.params_kept * 100, 1) for m in report.models})
    ax.set_xticks(ticks, [f"{t:g}%" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("parameters kept (% of the unpruned controller, log)")
    ax.set_ylabel(f"mean return, gymnasium {report.config.get('env_id', 'Pendulum-v1')} (torch)")
    seeds = report.seeds["episodes"]
    ax.set_title(
        f"return vs parameters kept ({len(seeds)} episodes, seeds {seeds[0]}..{seeds[-1]}; bars: paired s.e.)",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_latency(report: BenchReport, path: Path) -> None:
    """Left: median µs per step of the runtimes that ran natively; right: emulated targets as a ratio to unpruned."""
    plt = _pyplot()
    labels = [m.label for m in report.models]
    native = list(dict.fromkeys((r.runtime, r.target) for r in report.latency if not r.emulated))
    emulated = list(dict.fromkeys(r.target for r in report.latency if r.emulated))
    by = {(r.model, r.runtime, r.target): r for r in report.latency}
    fig, axes = plt.subplots(
        1,
        2 if emulated else 1,
        figsize=(11 if emulated else 7.5, 4.2),
        gridspec_kw={"width_ratios": [max(len(native), 1), max(len(emulated), 1)]} if emulated else None,
    )
    axes = np.atleast_1d(axes)
    width = 0.8 / len(labels)
    ax = axes[0]
    x = np.arange(len(native))
    for i, m in enumerate(labels):
        vals = [by[(m, r, t)].median_us for r, t in native]
        p99 = [by[(m, r, t)].p99_us for r, t in native]
        ax.bar(x + (i - (len(labels) - 1) / 2) * width, vals, width, label=m, color=f"C{i}")
        ax.scatter(x + (i - (len(labels) - 1) / 2) * width, p99, marker="_", color="k", zorder=3)
    ax.set_xticks(x, [f"{r}\n{t}" for r, t in native], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("µs per control step (median; dash: p99)")
    ax.set_title("measured on this machine", fontsize=10)
    ax.legend(fontsize=8)
    if emulated:
        ax = axes[1]
        x = np.arange(len(emulated))
        for i, m in enumerate(labels):
            ax.bar(
                x + (i - (len(labels) - 1) / 2) * width,
                [by[(m, "stub", t)].ratio_to_unpruned for t in emulated],
                width,
                color=f"C{i}",
            )
        ax.axhline(1.0, color="k", linewidth=0.8)
        ax.set_xticks(x, [f"stub\n{t}" for t in emulated], fontsize=8)
        ax.set_ylabel("median time / unpruned (same runner)")
        ax.set_title("under qemu-user: ratio only", fontsize=10)
    fig.suptitle("controller latency, batch 1, one thread", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_mcu_memory(report: BenchReport, path: Path) -> None:
    """Flash and RAM of each model's firmware as a share of each microcontroller's budget (one axis for parts of any
    size), and the instructions per inference (an instruction count under qemu, not a time)."""
    plt = _pyplot()
    labels = [m.label for m in report.models]
    targets = list(dict.fromkeys(r.target for r in report.mcu_memory))
    by = {(r.model, r.target): r for r in report.mcu_memory}
    fig, axes = plt.subplots(1, 3, figsize=(max(12.0, 3.0 * len(targets) + 6), 4.6))
    width = 0.8 / len(labels)
    x = np.arange(len(targets))
    offsets = [(i - (len(labels) - 1) / 2) * width for i in range(len(labels))]
    for ax, what, used, budget in (
        (axes[0], "flash", "flash_bytes", "flash_budget_bytes"),
        (axes[1], "RAM", "ram_bytes", "ram_budget_bytes"),
    ):
        top = 100.0
        for i, m in enumerate(labels):
            rows = [by[(m, t)] for t in targets]
            share = [100.0 * getattr(r, used) / getattr(r, budget) for r in rows]
            top = max(top, *share)
            bars = ax.bar(x + offsets[i], share, width, color=f"C{i}", label=m)
            for bar, r, v in zip(bars, rows, share):
                over = v > 100.0
                if over:
                    bar.set_hatch("//")
                    bar.set_edgecolor("red")
                ax.annotate(
                    f"{getattr(r, used) / 1024:.1f} KB" + ("\nover" if over else ""),
                    (bar.get_x() + bar.get_width() / 2, v),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="red" if over else "k",
                )
        ax.axhline(100.0, color="k", linestyle="--", linewidth=1.2)
        ax.set_ylim(0, top * 1.2)
        ax.set_xticks(x, [f"{t}\n{getattr(by[(labels[0], t)], budget) // 1024} KB {what}" for t in targets], fontsize=8)
        ax.set_ylabel(f"{what} used (% of the part's {what})")
        ax.set_title(f"{what} of the linked image (dashed: the budget)", fontsize=10)
    axes[0].legend(fontsize=8, loc="upper right")
    ax = axes[2]
    for i, m in enumerate(labels):
        vals = [(by[(m, t)].instructions_per_inference or {}).get("mean", 0.0) for t in targets]
        bars = ax.bar(x + offsets[i], vals, width, color=f"C{i}")
        for bar, t, v in zip(bars, targets, vals):
            ax.annotate(
                f"{v:,.0f}" if by[(m, t)].fits else "does not fit",
                (bar.get_x() + bar.get_width() / 2, v),
                ha="center",
                va="bottom",
                fontsize=7,
                color="k" if by[(m, t)].fits else "red",
                rotation=0 if by[(m, t)].fits else 90,
            )
    ax.set_xticks(x, targets, fontsize=8)
    ax.set_ylabel("instructions per inference (mean)")
    ax.set_title("instructions under qemu -icount (not time)", fontsize=10)
    fig.suptitle("microcontroller firmware: flash and RAM against each part's budget (arm-none-eabi-size)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_plots(report: BenchReport, folder: Path) -> dict[str, str]:
    """The figures the report has data for into ``folder``; returns name -> file name (relative to the folder)."""
    files = {"return_vs_params": "return_vs_params.png"}
    plot_return_vs_params(report, folder / files["return_vs_params"])
    if report.latency:  # none without a Linux target
        files["latency"] = "latency.png"
        plot_latency(report, folder / files["latency"])
    if report.mcu_memory:
        files["mcu_memory"] = "mcu_memory.png"
        plot_mcu_memory(report, folder / files["mcu_memory"])
    return files
