"""The autoencoder bench's tables (terminal and Markdown) and figures (PSNR vs parameters kept, reconstructions)."""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from tools.usecases.autoencoder.results import MODES, AEReport


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def budget_tables(report: AEReport) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per mode: test PSNR (dB, and change vs unpruned) by method and budget."""
    out = []
    keeps = sorted({r.keep for r in report.rows}, reverse=True)
    for mode in MODES.values():
        rows = [r for r in report.rows if r.mode == mode]
        if not rows:
            continue
        head = ["method", *(f"{k:.0%} kept" for k in keeps)]
        body = []
        for label in dict.fromkeys(r.method for r in rows):
            cells = []
            for k in keeps:
                r = next((r for r in rows if r.method == label and r.keep == k), None)
                cells.append(
                    "" if r is None else f"{r.test_psnr:.2f} ({r.test_drop_db:+.2f})" + ("" if r.feasible else " x")
                )
            body.append([label, *cells])
        title = (
            f"test PSNR in dB (change vs unpruned {report.unpruned['test_psnr']:.2f}) by method and prunable parameters kept, "
            f"{'least-squares re-fit of the next layers on training images' if mode == 're-fit' else 'shrink only'}"
        )
        out.append((title, head, body))
    return out


def bound_table(report: AEReport) -> tuple[str, list[str], list[list[str]]]:
    """Largest parameter reduction keeping validation PSNR >= the bound, per method and mode."""
    head = ["method", "mode", "keep", "params", "reduction", "val PSNR", "test PSNR", "test holds", "tries", "s"]
    body = [
        [
            b.method,
            b.mode,
            f"{b.keep:.4f}",
            str(b.params),
            f"{b.reduction:.1%}" if b.found else "none",
            f"{b.val_psnr:.2f}",
            f"{b.test_psnr:.2f}",
            "yes" if b.test_holds else "no",
            str(len(b.tried)),
            f"{b.seconds:.1f}",
        ]
        for b in report.bounds
    ]
    bound = report.bounds[0].min_psnr if report.bounds else float("nan")
    title = (
        f"largest parameter reduction keeping validation PSNR >= {bound:.2f} dB (unpruned val {report.unpruned['val_psnr']:.2f}); "
        f"'test holds': test PSNR within the same drop of the unpruned test PSNR ({report.unpruned['test_psnr']:.2f})"
    )
    return title, head, body


def latency_table(report: AEReport) -> tuple[str, list[str], list[list[str]]]:
    """Batch-1 latency per model and runtime, with the ratio to unpruned."""
    head = ["model", "runtime", "median us", "p99 us", "ratio to unpruned", "calls"]
    body = [
        [r.model, r.runtime, f"{r.median_us:.1f}", f"{r.p99_us:.1f}", f"{r.ratio_to_unpruned:.3f}", str(r.n)]
        for r in report.latency
    ]
    return (
        f"batch-1 latency on this machine ({report.machine['cpu']}), one thread; gd models of the re-fit mode",
        head,
        body,
    )


def _tables(report: AEReport) -> list[tuple[str, list[str], list[list[str]]]]:
    tables = [*budget_tables(report), bound_table(report)]
    if report.latency:
        tables.append(latency_table(report))
    tables.append(
        (
            "acceptance checks (gd above every uniform baseline on test PSNR)",
            ["check", "pass"],
            [[k, "yes" if v else "NO"] for k, v in report.checks.items()],
        )
    )
    return tables


def print_tables(report: AEReport, console: Console) -> None:
    """All tables to the terminal."""
    for title, head, body in _tables(report):
        t = Table(title=title)
        for i, h in enumerate(head):
            t.add_column(h, justify="left" if i < (2 if head[1] in ("mode", "runtime") else 1) else "right")
        for row in body:
            t.add_row(*row)
        console.print(t)
    for note in report.notes:
        console.print(f"note: {note}")


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    n_left = 2 if head[1] in ("mode", "runtime") else 1  # text columns; the rest are numbers
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < n_left else "---:" for i in range(len(head))) + "|",
    ]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def write_markdown(report: AEReport, path: Path) -> None:
    """report.md: how the run was made, the tables, the figures."""
    u, d = report.unpruned, report.data
    parts = [
        f"# prune-and-export bench --model autoencoder ({report.created_utc})",
        "",
        f"`{report.command}`; {report.seconds:.0f} s on {report.machine['cpu']}, torch {report.machine['torch']}.",
        "",
        f"Data {d['source']} ({d['side']}x{d['side']} pixels), seed {d['seed']}: {d['train']} train / {d['val']} validation "
        f"(the search's objective) / {d['test']} test (every result below). Unpruned autoencoder: {u['params']} parameters, "
        f"widths {u['widths']}, PSNR train {u['train_psnr']:.2f} / val {u['val_psnr']:.2f} / test {u['test_psnr']:.2f} dB "
        f"(for scale: the mean training image as every reconstruction scores {u['mean_image_test_psnr']:.2f} dB on test). "
        f"Pruning groups {u['groups']} in components {list(u['components'])}; protected: {', '.join(u['protected'])}.",
        "",
    ]
    for title, head, body in _tables(report):
        parts += [f"## {title}", "", _md_table(head, body), ""]
    parts += [f"![{name}]({f})" for name, f in report.files.items() if f.endswith(".png")]
    if report.notes:
        parts += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    path.write_text("\n".join(parts) + "\n")


def plot_psnr_vs_params(report: AEReport, path: Path) -> None:
    """Test PSNR against the share of parameters kept, one line per method, one panel per mode."""
    plt = _pyplot()
    modes = [m for m in MODES.values() if any(r.mode == m for r in report.rows)]
    fig, axes = plt.subplots(1, len(modes), figsize=(6 * len(modes), 4.2), sharey=True, squeeze=False)
    base = report.unpruned["test_psnr"]
    for ax, mode in zip(axes[0], modes):
        for i, label in enumerate(dict.fromkeys(r.method for r in report.rows)):
            rows = sorted((r for r in report.rows if r.mode == mode and r.method == label), key=lambda r: r.params_kept)
            ax.plot(
                [100 * r.params_kept for r in rows] + [100.0],
                [r.test_psnr for r in rows] + [base],
                "-o",
                color=f"C{i}",
                label=label,
            )
            bound = next((b for b in report.bounds if b.mode == mode and b.method == label and b.found), None)
            if bound is not None:  # the smallest model meeting the bound, as a star
                ax.plot([100 * bound.params / report.unpruned["params"]], [bound.test_psnr], "*", color=f"C{i}", ms=12)
        ax.axhline(base, color="k", ls="--", lw=1, label="unpruned")
        ax.axhline(report.unpruned["mean_image_test_psnr"], color="k", ls="-.", lw=1, label="mean training image")
        if report.bounds:
            ax.axhline(
                base - (report.unpruned["val_psnr"] - report.bounds[0].min_psnr),
                color="grey",
                ls=":",
                lw=1,
                label="bound (same drop on test)",
            )
        ax.set_xlabel("parameters kept, % of unpruned")
        ax.set_title(f"{mode}: {'least-squares re-fit on train images' if mode == 're-fit' else 'no re-fit'}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR on held-out test images, dB")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"digits autoencoder pruned by method ({report.data['source']}); stars: smallest model within the bound"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reconstructions(report: AEReport, images: dict[str, torch.Tensor], path: Path) -> None:
    """Held-out digits, one per row: original | unpruned | each method's reconstruction at report.image_keep."""
    plt = _pyplot()
    side = report.data["side"]
    columns = list(images)
    n = len(images["original"])
    fig, axes = plt.subplots(n, len(columns), figsize=(0.9 * len(columns) + 0.5, 0.95 * n + 1.0), squeeze=False)
    for j, name in enumerate(columns):
        rec = images[name]
        psnr = None
        if name != "original":
            mse = (rec.double() - images["original"].double()).pow(2).mean(1).clamp_min(1e-10)
            psnr = float((10 * torch.log10(1 / mse)).mean())
        for i in range(n):
            ax = axes[i][j]
            ax.imshow(rec[i].reshape(side, side).numpy(), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][j].set_title(name + ("" if psnr is None else f"\n{psnr:.1f} dB"), fontsize=7)
    fig.suptitle(
        f"held-out digits; pruned columns keep {report.image_keep:.0%} of the prunable parameters (dB: mean PSNR of these {n})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
