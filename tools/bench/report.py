"""The bench report: what pruning bought (latency, memory) and cost (reward), as data, JSON, Markdown and a table.

Every number here was measured by the run that wrote the report (``tools/bench/harness.py``).
Emulated latencies (qemu-user) carry only their ratio to the unpruned model on the same runner.
Microcontroller targets have no latency: their firmware's flash and RAM against the part's budget,
and the instructions it executes per inference under qemu-system-arm (not a time), in ``mcu_memory``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tools.bench.reward import Paired, RewardStats
from tools.plant.scenarios import plant_label

SCHEMA = "prune-and-export.bench/1"
UNPRUNED = "unpruned"
# text columns of each table; the rest are numbers
N_LEFT = {
    "memory": 2,
    "latency": 4,
    "reward": 2,
    "mcu_memory": 3,
    "robust": 1,
}


@dataclass
class ModelRecord:
    """One controller in the comparison and its memory footprint."""

    label: str  # "unpruned", or "<method>@<keep>"
    method: str | None
    keep: float | None  # budget asked for (fraction of prunable parameters)
    feasible: bool  # the search met the budget (always true for the unpruned model)
    file: str  # controller file benchmarked (pruned ones are saved in the report folder)
    sha256: str
    hidden: list[int]
    params: int
    params_kept: float  # params / unpruned params
    weight_bytes: int  # parameter tensors as stored (float32)
    macs: int  # multiply-adds per control step
    onnx_bytes: int
    library_bytes: dict[str, int]  # TVM library per target
    stub_peak_rss_kb: dict[str, int]  # per target; under qemu-user the emulator process, guest included
    failed_constraints: list[str] = field(default_factory=list)  # of an infeasible model: budget, floor, stability


@dataclass
class LatencyRow:
    """Per-step latency of one model in one runtime on one target."""

    model: str
    runtime: str  # torch | onnxruntime | tvm-python | stub
    target: str
    runner: str  # native, qemu (...), ssh://...
    emulated: bool  # under qemu-user: absolute times are not device times and are left out
    n: int
    rounds: int
    spread: float
    ratio_to_unpruned: float  # median / median of the unpruned model, same runtime and runner
    median_us: float | None = None
    p99_us: float | None = None
    max_us: float | None = None
    check: dict | None = None  # stub rows: its actions checked against a reference before timing (StubCheck)


@dataclass
class RewardRow:
    """Closed-loop reward of one model in one runtime (torch, or stub:<target> through lockstep HIL)."""

    model: str
    runtime: str
    stats: RewardStats
    vs_unpruned: Paired | None  # this model minus the unpruned one, same runtime, per seed
    vs_torch_max_abs: float | None = None  # stub rows: largest |device - torch| return of this model


@dataclass
class RobustRow:
    """One model under the scenario set of ``--scenarios`` (torch, the reward's seeds), beside nominal."""

    model: str
    set: str
    aggregate: str  # mean | worst | cvar:ALPHA: how ``value`` sums up the scenarios' mean returns
    value: float  # the aggregate over the set's scenarios (nominal not included)
    mean: dict[str, float]  # mean return per scenario, "nominal" first
    balanced_share: dict[str, float]  # share of episodes that end balanced, per scenario
    value_vs_unpruned: float | None  # value minus the unpruned model's (None for the unpruned row)


@dataclass
class McuMemoryRow:
    """One model's firmware on one microcontroller target: flash and RAM of the linked image against the part's budget."""

    model: str
    target: str
    fits: bool  # flash_bytes <= flash_budget_bytes and ram_bytes <= ram_budget_bytes
    flash_bytes: int  # code + constants (+ .data's initial image), from arm-none-eabi-size of the linked image
    ram_bytes: int  # .data + .bss (tensors, workspace arena) + the reserved stack
    flash_budget_bytes: int
    ram_budget_bytes: int
    weights_bytes: int  # the folded weights (part of flash)
    tensor_bytes: int  # input and intermediate tensors (part of RAM)
    arena_bytes: int  # the workspace arena (part of RAM)
    stack_bytes: int  # the reserved stack (part of RAM)
    qemu_machine: str
    # instructions executed per inference under qemu-system-arm -icount (min/mean/max/resolution/how, as the
    # bundle's manifest records them): not a time. None where the firmware does not fit (it was never run)
    instructions_per_inference: dict | None = None
    cycles_per_inference: int | None = None  # qemu models no timing: None here (the manifest says why)
    verification: str | None = None  # the export's check of the firmware against onnxruntime; None if not built
    firmware_bytes: int | None = None  # the ELF shipped in the bundle; None if not built
    reason: str = ""  # why it does not fit (the export's message), empty when it fits


@dataclass
class BenchReport:
    """Everything one ``bench`` run measured, with what is needed to repeat it."""

    created_utc: str
    seconds: float
    command: str
    config: dict
    machine: dict
    versions: dict
    seeds: dict
    models: list[ModelRecord]
    latency: list[LatencyRow]
    reward: list[RewardRow]
    notes: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    schema: str = SCHEMA
    mcu_memory: list[McuMemoryRow] = field(default_factory=list)  # per model and microcontroller target
    robust: list[RobustRow] = field(default_factory=list)  # per model, with --scenarios only

    def to_dict(self) -> dict:
        return asdict(self)

    def model(self, label: str) -> ModelRecord:
        return next(m for m in self.models if m.label == label)


def write_json(report: BenchReport, path: Path) -> None:
    """report.json (strict JSON: a NaN or infinity is an error, not a silent null)."""
    path.write_text(json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n")


def _fmt_us(row: LatencyRow) -> tuple[str, str, str]:
    if row.emulated:
        return "emulated", "-", "-"
    return f"{row.median_us:.1f}", f"{row.p99_us:.1f}", f"{row.max_us:.0f}"


def _paired(p: Paired | None) -> str:
    return "-" if p is None else f"{p.mean_diff:+.2f} ± {p.stderr:.2f}"


def memory_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the memory table."""
    targets = list(report.models[0].library_bytes)
    head = ["model", "hidden", "params", "kept", "weight bytes", "MACs/step", "ONNX bytes"]
    head += [f"{t} .so bytes" for t in targets] + [f"{t} stub peak RSS KiB" for t in targets]
    rows = []
    for m in report.models:
        rows.append(
            [
                m.label + ("" if m.feasible else f" (missed: {', '.join(m.failed_constraints) or 'a constraint'})"),
                "-".join(map(str, m.hidden)),
                f"{m.params:,}",
                f"{m.params_kept:.1%}",
                f"{m.weight_bytes:,}",
                f"{m.macs:,}",
                f"{m.onnx_bytes:,}",
            ]
            + [f"{m.library_bytes[t]:,}" for t in targets]
            + [f"{m.stub_peak_rss_kb[t]:,}" for t in targets]
        )
    return head, rows


def latency_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    head = ["model", "runtime", "target", "runner", "median µs", "p99 µs", "max µs", "x unpruned", "spread", "calls"]
    rows = []
    for r in report.latency:
        med, p99, mx = _fmt_us(r)
        rows.append(
            [
                r.model,
                r.runtime,
                r.target,
                r.runner,
                med,
                p99,
                mx,
                f"{r.ratio_to_unpruned:.2f}x",
                f"{r.spread:.0%}",
                f"{r.n:,}",
            ]
        )
    return head, rows


def reward_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    head = [
        "model",
        "runtime",
        "mean",
        "std",
        "worst",
        "upright",
        "Δ vs unpruned (paired) ± s.e.",
        "max abs(device - torch)",
    ]
    rows = []
    for r in report.reward:
        s = r.stats
        rows.append(
            [
                r.model,
                r.runtime,
                f"{s.mean:.2f}",
                f"{s.std:.2f}",
                f"{s.worst:.2f}",
                _share(s.upright_share),
                _paired(r.vs_unpruned),
                "-" if r.vs_torch_max_abs is None else f"{r.vs_torch_max_abs:.1e}",
            ]
        )
    return head, rows


def robust_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the robustness table: nominal and each scenario's mean return (balanced share), the aggregate."""
    if not report.robust:
        return [], []
    names = list(report.robust[0].mean)
    agg = report.robust[0].aggregate
    head = ["model", *names, f"{agg} over {report.robust[0].set}", f"Δ {agg} vs unpruned"]
    rows = [
        [r.model]
        + [f"{r.mean[n]:.2f} ({_share(r.balanced_share[n])})" for n in names]
        + [f"{r.value:.2f}", "-" if r.value_vs_unpruned is None else f"{r.value_vs_unpruned:+.2f}"]
        for r in report.robust
    ]
    return head, rows


def _share(x: float | None) -> str:
    """A share as a percentage; None (not measured: an env other than Pendulum-v1) as '-'."""
    return "-" if x is None else f"{x:.0%}"


def _kb(n: int) -> str:
    return f"{n / 1024:.1f}"


def mcu_memory_rows(report: BenchReport) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the microcontroller table: flash/RAM against each part's budget, instructions per inference."""
    head = [
        "model",
        "target",
        "fits",
        "flash KB",
        "flash budget KB",
        "RAM KB",
        "RAM budget KB",
        "weights KB",
        "arena B",
        "instructions/inference",
    ]
    rows = []
    for r in report.mcu_memory:
        ins = r.instructions_per_inference
        rows.append(
            [
                r.model,
                r.target,
                "yes" if r.fits else "NO (does not fit)",
                _kb(r.flash_bytes),
                _kb(r.flash_budget_bytes),
                _kb(r.ram_bytes),
                _kb(r.ram_budget_bytes),
                _kb(r.weights_bytes),
                f"{r.arena_bytes:,}",
                "-" if ins is None else f"{ins['mean']:,.0f}",
            ]
        )
    return head, rows


def _titles(report: BenchReport) -> dict[str, str]:
    seeds = report.seeds
    return {
        "memory": "memory",
        "latency": f"latency per control step, batch 1, one thread (after {report.config['warmup']} warm-up calls; "
        "qemu-user rows only as a ratio to the unpruned model; spread: interquartile range of the "
        "per-round medians over the median)",
        "reward": f"closed-loop return, gymnasium {report.config['env_id']}, {report.config['episodes']} episodes, "
        f"seeds {seeds['episodes'][0]}..{seeds['episodes'][-1]}; "
        + (
            "upright = |angle| < 0.1 rad over the last 50 steps"
            if report.config["env_id"] == "Pendulum-v1"
            else "upright: measured on Pendulum-v1 only"
        ),
        "robust": f"closed-loop return under the scenarios of --scenarios (torch on the "
        f"{plant_label(report.config['env_id'])} plant, the reward's seeds; "
        "balanced share in brackets), nominal first; the last columns aggregate the scenarios as "
        "--robust-objective says, which is what the search optimised",
        "mcu_memory": "microcontroller firmware: flash (code + constants + .data image) and RAM (.data + .bss + stack) "
        "of the linked image (arm-none-eabi-size) against each part's budget (KB = 1024 bytes); "
        "instructions executed per inference under qemu-system-arm -icount (mean; an instruction "
        "count, not a time: qemu gives no cycle count)",
    }


def print_tables(report: BenchReport, console: Console) -> None:
    """The three tables in the terminal."""
    titles = _titles(report)
    tables = [
        ("memory", memory_rows(report)),
        ("latency", latency_rows(report)),
        ("reward", reward_rows(report)),
        ("robust", robust_rows(report)),
    ]
    if report.mcu_memory:
        tables.insert(1, ("mcu_memory", mcu_memory_rows(report)))
    for key, (head, rows) in tables:
        if not rows:
            continue
        table = Table(title=titles[key], title_justify="left")
        for i, col in enumerate(head):
            table.add_column(col, justify="left" if i < N_LEFT[key] else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    for note in report.notes:
        console.print(f"note: {note}")


def _md_table(head: list[str], rows: list[list[str]], n_left: int) -> str:
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i < n_left else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_markdown(report: BenchReport, path: Path) -> None:
    """report.md: the tables, the plots, and how to repeat the run."""
    titles = _titles(report)
    m = report.machine
    parts = [
        f"# prune-and-export bench ({report.created_utc})",
        "",
        f"`{report.command}` on {m['cpu']} ({m['cores']} cores), {m['os']}, Python {m['python']}; "
        f"{report.seconds:.0f} s. Controller `{report.model(UNPRUNED).file}` (sha256 {report.model(UNPRUNED).sha256[:12]}).",
        "",
        "Seeds: "
        + ", ".join(f"{k} {v if not isinstance(v, list) else f'{v[0]}..{v[-1]}'}" for k, v in report.seeds.items()),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
        "",
        f"## Reward\n\n{titles['reward']}\n",
        _md_table(*reward_rows(report), N_LEFT["reward"]),
        "",
    ]
    if report.robust:
        parts += [f"## Robustness\n\n{titles['robust']}\n", _md_table(*robust_rows(report), N_LEFT["robust"]), ""]
    parts += [
        f"## Latency\n\n{titles['latency']}\n",
        _md_table(*latency_rows(report), N_LEFT["latency"])
        if report.latency
        else "No Linux target in this run: nothing was timed (microcontroller targets: instructions per inference below).",
        "",
        "## Memory\n",
        _md_table(*memory_rows(report), N_LEFT["memory"]),
        "",
    ]
    if report.mcu_memory:
        parts += [
            f"## Microcontroller memory\n\n{titles['mcu_memory']}\n",
            _md_table(*mcu_memory_rows(report), N_LEFT["mcu_memory"]),
            "",
        ]
    parts += [f"![{name}]({Path(f).name})" for name, f in report.files.items() if f.endswith(".png")]
    if report.notes:
        parts += ["", "## Notes", ""] + [f"- {n}" for n in report.notes]
    path.write_text("\n".join(parts) + "\n")


def checks_table(checks: dict[str, bool], title: str = "checks") -> Table:
    """A bench's pass/fail checks as a two-column table (a failed one in red)."""
    table = Table(title=title)
    table.add_column("check")
    table.add_column("pass")
    for name, ok in checks.items():
        table.add_row(name, "yes" if ok else "[red]NO[/]")
    return table


def budget_table(title: str, rows: Sequence[Any], cell: Callable[[Any], str]) -> Table:
    """Methods down, budgets (largest first) across; ``cell(row)`` formats the row of that method and budget.

    Rows need ``method`` and ``keep``; the pruning benches of every use case share this layout.
    """
    budgets = sorted({r.keep for r in rows}, reverse=True)
    table = Table(title=title)
    table.add_column("method")
    for b in budgets:
        table.add_column(f"{b:.0%} kept", justify="right")
    for label in dict.fromkeys(r.method for r in rows):
        found = [next((r for r in rows if r.method == label and r.keep == b), None) for b in budgets]
        table.add_row(label, *("" if r is None else cell(r) for r in found))
    return table
