"""Float against int8 weights, unpruned against pruned, on the reference controller: paired return, flash, RAM and
instructions per inference on the Cortex-M targets, latency on the Linux targets.

Reads top to bottom. The reference controller is pruned once with gd (``--keep``, seed ``--seed``, the
search of ``prune-and-export prune``); each of the two models is then taken in float and in weight-only
int8 (:func:`prune.quantize`: what ``prune --quantize int8`` deploys after the same search). Every model
plays gymnasium's Pendulum-v1 on seeds 0..N-1 on the host (the int8 model is the exact host twin of the
device's arithmetic, up to float32 summation order), compared per seed with the unpruned float controller.
Each model is exported to each Cortex-M target (a firmware that does not fit is a row, not an error), its
flash and RAM read from the linked image and its instructions per inference counted under qemu's
``-icount``; the int8 models that fit the 256 KB part (else the first target they fit) then run
``--hil-episodes`` lockstep HIL episodes under qemu-system-arm, their returns against the host's.
Each model's runtime-free stub is timed on ``--linux-targets`` (x86_64 natively; the ARM Linux
targets under qemu-user, shown as ratios to the unpruned float model only).

    python -m tools.bench.int8 [--keep 0.25] [--episodes 100] [--hil-episodes 3] [--out docs/int8_bench.json]

Full integer (``--int-keep``, default 0.1): the unpruned controller and its gd@0.1 model as full-integer
firmware (int8 weights and activations, int32 accumulation, activation tables; :mod:`export.mcu.int_model`)
for the FPU-less ``cortex-m3`` (qemu ``mps2-an385``), activation scales calibrated on states the float
controller visits (seeded closed-loop episodes disjoint from the judged seeds). Their return is the
host twin's (exact: the device computes the same integers), and ``--int-hil-episodes`` lockstep HIL
episodes check the device against the twin per episode.

Done-when of the unpruned int8 controller: it fits the 256 KB-flash part (cortex-m4-256k; float does not)
and its return is within 2% of float on the same seeds; of the gd@0.1 full-integer controller: it runs
on cortex-m3 in lockstep HIL with flash under 32 KB, its return within 5% of the unpruned float
controller's (``checks`` in the JSON).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from export import DoesNotFit, export_bundle, load_int_model, run_stub_bench
from prune import Int8Linear, bytes_footprint, quantize
from targets import get_target, host_arch, parse_target_list
from tools.bench.mcu import export_mcu, mcu_versions
from tools.bench.reward import Paired, RewardStats, device_reward, torch_reward
from tools.controllers.load import load_controller
from tools.controllers.native import Controller, mlp_architecture
from tools.pipeline.export import visited_states
from tools.pipeline.prune import prune_controller
from tools.plant.policy import as_policy

DEFAULT_TARGETS = "cortex-m4,cortex-m4-256k,cortex-m7"
RETURN_TOLERANCE = 0.02  # the unpruned int8 return within 2% of float's


@dataclass
class Int8BenchConfig:
    keep: float = 0.25
    """fraction of the prunable parameters the pruned model keeps (gd)"""
    seed: int = 0
    """seed of the search and of the parity samples"""
    episodes: int = 100
    """gymnasium Pendulum-v1 episodes per model, seeds 0..episodes-1, paired"""
    targets: str = DEFAULT_TARGETS
    """Cortex-M targets every model is exported to"""
    hil_episodes: int = 3
    """lockstep HIL episodes of the int8 models on the first target where they fit (0: none)"""
    max_evaluations: int = 150
    """gd's objective evaluations (the prune default)"""
    int_keep: float = 0.1
    """budget of the pruned model run full-integer on the FPU-less cortex-m3 (0: skip that part)"""
    int_hil_episodes: int = 100
    """lockstep HIL episodes of the full-integer models on cortex-m3 (seeds 0..N-1)"""
    linux_targets: str = "x86_64,cortex-a72,cortex-a7"
    """Linux targets whose runtime-free stub is timed per model ('' : none)"""
    rounds: int = 3
    """timing rounds, the models interleaved in each; the median of the rounds' medians is reported"""


@dataclass
class ModelRow:
    """One model: its size, its return (paired with the unpruned float controller), its HIL check."""

    model: str
    precision: str
    params: int
    weight_bytes: int
    returns: RewardStats
    vs_float_unpruned: Paired
    relative_to_float_unpruned: float  # (mean - float mean) / |float mean|
    hil: dict | None = None  # target, episodes, device and host returns, largest |device - host| per episode


@dataclass
class Int8Report:
    config: Int8BenchConfig
    models: list[ModelRow]
    mcu: list[dict]  # McuMemoryRow.to_dict per (model, target)
    checks: dict[str, bool]
    machine: dict = field(default_factory=dict)
    latency: list[dict] = field(
        default_factory=list
    )  # per model and Linux target: stub median us, ratio to unpruned float

    def to_dict(self) -> dict:
        return asdict(self)


def _controller(module: torch.nn.Module, base: Controller, label: str) -> Controller:
    arch = mlp_architecture(module, base.architecture.get("activation", ""))
    digest = hashlib.sha256(json.dumps([label, arch]).encode()).hexdigest()
    return Controller(module.eval(), base.spec, arch, base.path, digest)


def weights_of(module: torch.nn.Module) -> int:
    """Weights and biases, float or int8 (an Int8Linear holds them as buffers)."""
    int8 = [m for m in module.modules() if isinstance(m, Int8Linear)]
    return sum(p.numel() for p in module.parameters()) + sum(
        m.weight_q.numel() + (m.bias.numel() if m.bias is not None else 0) for m in int8
    )


def models_of(config: Int8BenchConfig, console: Console) -> dict[str, Controller]:
    """The reference controller and its gd-pruned model, each in float and in int8."""
    base = load_controller(None)
    pruned = prune_controller(
        base, config.keep, "gd", seed=config.seed, judge_episodes=0, max_evaluations=config.max_evaluations
    )
    console.print(f"pruned gd@{config.keep:g} (seed {config.seed}): widths {pruned.result.widths}")
    tag = f"gd@{config.keep:g}"
    return {
        "unpruned-float": base,
        "unpruned-int8": _controller(quantize(base.module), base, "unpruned-int8"),
        f"{tag}-float": _controller(pruned.module, base, f"{tag}-float"),
        f"{tag}-int8": _controller(quantize(pruned.module), base, f"{tag}-int8"),
    }


def run(config: Int8BenchConfig, workdir: Path, console: Console) -> Int8Report:
    torch.set_num_threads(1)
    targets = parse_target_list(config.targets)
    models = models_of(config, console)
    console.print(f"returns: gymnasium Pendulum-v1, seeds 0..{config.episodes - 1}, every model")
    returns = {label: torch_reward(as_policy(c.module), config.episodes, 0) for label, c in models.items()}
    ref = returns["unpruned-float"]
    rows = []
    for label, c in models.items():
        r = returns[label]
        rows.append(
            ModelRow(
                label,
                label.rsplit("-", 1)[-1],
                weights_of(c.module),
                bytes_footprint(c.module),
                r,
                Paired.of(r, ref),
                (r.mean - ref.mean) / abs(ref.mean),
            )
        )
    say = lambda what: console.print(f"  {what}")  # noqa: E731
    mcu = export_mcu(models, targets, workdir, n_parity=200, seed=config.seed, say=say, tick=lambda: None)
    if config.hil_episodes:
        for row in rows:
            if row.precision != "int8":
                continue
            # the small part first: where the done-when is judged
            order = sorted(targets, key=lambda t: t.name != "cortex-m4-256k")
            where = next((t.name for t in order if mcu.fits(row.model, t.name)), None)
            if where is None:
                continue
            say(f"lockstep HIL: {row.model} on {where}, {config.hil_episodes} episodes")
            d = device_reward(
                mcu.bundles[(row.model, where)], where, as_policy(models[row.model].module), config.hil_episodes, 0
            )
            row.hil = {
                "target": where,
                "runner": d.runner,
                "episodes": config.hil_episodes,
                "device_returns": d.device.returns,
                "host_returns": d.torch.returns,
                "max_return_diff": d.max_return_diff,
                "max_abs_action_diff": d.max_abs_action_diff,
            }
    by = {(r.model, r.target): r for r in mcu.rows}
    small = "cortex-m4-256k"
    int8_row = next(r for r in rows if r.model == "unpruned-int8")
    checks = {}
    if any(t.name == small for t in targets):
        checks = {
            "unpruned-float does not fit cortex-m4-256k": not by[("unpruned-float", small)].fits,
            "unpruned-int8 fits cortex-m4-256k": by[("unpruned-int8", small)].fits,
            "unpruned-int8 return within 2% of float (paired)": abs(int8_row.relative_to_float_unpruned)
            <= RETURN_TOLERANCE,
        }
    if config.int_keep:
        int_rows, int_mcu, int_checks = integer_part(config, models["unpruned-float"], ref, workdir, console)
        rows += int_rows
        mcu_dicts = [asdict(r) for r in mcu.rows] + int_mcu
        checks.update(int_checks)
    else:
        mcu_dicts = [asdict(r) for r in mcu.rows]
    machine = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "tools": mcu_versions(targets),
        "instructions_how": mcu.instructions_how,
    }
    latency = latency_part(config, models, workdir, console) if config.linux_targets else []
    return Int8Report(config, rows, mcu_dicts, checks, machine, latency)


def latency_part(config: Int8BenchConfig, models: dict[str, Controller], workdir: Path, console: Console) -> list[dict]:
    """Median latency per inference of the runtime-free stub of each model on each Linux target (ratios side by side).

    Each model is exported (verified against onnxruntime on visited states) and timed on the same
    visited states; the models alternate within each round, so a load change hits them alike. An
    emulated target (qemu-user) gives only ratios: its microseconds are the emulator's.
    """
    targets = parse_target_list(config.linux_targets)
    states = visited_states(models["unpruned-float"])
    bundles = {}
    for label, c in models.items():
        console.print(f"  export {label} for {config.linux_targets}")
        bundles[label] = workdir / f"{label}-linux"
        export_bundle(
            c.module, c.spec, targets, bundles[label], n_parity=200, seed=config.seed, parity_observations=states
        )
    medians: dict[tuple[str, str], list[float]] = {}
    for _round in range(config.rounds):
        for t in targets:
            n = 2000 if t.arch == host_arch() else 300
            for label in models:
                res = run_stub_bench(bundles[label], t.name, n=n, warmup=n // 10, observations=states[:n])
                medians.setdefault((label, t.name), []).append(float(res["latency_us"]["p50"]))
    out = []
    for t in targets:
        base = float(np.median(medians[("unpruned-float", t.name)]))
        for label in models:
            us = float(np.median(medians[(label, t.name)]))
            out.append(
                {
                    "model": label,
                    "target": t.name,
                    "emulated": t.arch != host_arch(),
                    "median_us": us,
                    "rounds": medians[(label, t.name)],
                    "ratio_to_unpruned_float": us / base,
                }
            )
    return out


INT_TARGET = "cortex-m3"
INT_FLASH = 32 * 1024  # the done-when's flash bound of the pruned full-integer firmware
INT_RETURN_TOLERANCE = 0.05  # its return within 5% of the unpruned float controller's
TWIN_TOLERANCE = 1e-3  # device return vs host twin, per episode


def integer_part(
    config: Int8BenchConfig, base: Controller, ref: RewardStats, workdir: Path, console: Console
) -> tuple[list[ModelRow], list[dict], dict[str, bool]]:
    """Full-integer models (int8 weights and activations) on the FPU-less cortex-m3: unpruned and gd@int_keep.

    Each is exported with its activation scales calibrated on states the float controller visits
    (seeded closed-loop episodes, disjoint from the judged seeds); its return is the host twin's in
    gymnasium, and lockstep HIL under qemu-system-arm checks the device against the twin per episode.
    """
    target = get_target(INT_TARGET)
    calibration = visited_states(base)
    pruned = prune_controller(
        base, config.int_keep, "gd", seed=config.seed, judge_episodes=0, max_evaluations=config.max_evaluations
    )
    console.print(f"pruned gd@{config.int_keep:g} (seed {config.seed}): widths {pruned.result.widths}")
    rows, mcu, checks = [], [], {}
    float_returns = torch_reward(
        as_policy(pruned.module), config.episodes, 0
    )  # what the integer model is compared with
    rows.append(
        ModelRow(
            f"gd@{config.int_keep:g}-float",
            "float",
            weights_of(pruned.module),
            bytes_footprint(pruned.module),
            float_returns,
            Paired.of(float_returns, ref),
            (float_returns.mean - ref.mean) / abs(ref.mean),
        )
    )
    for label, module in (("unpruned-int", base.module), (f"gd@{config.int_keep:g}-int", pruned.module)):
        bundle = workdir / f"{label}-{INT_TARGET}"
        console.print(f"  full-integer firmware: {label} for {INT_TARGET}")
        try:
            manifest = export_bundle(
                module, base.spec, [target], bundle, n_parity=200, seed=config.seed, parity_observations=calibration
            )
        except DoesNotFit as e:
            m = e.memory
            mcu.append(
                {
                    "model": label,
                    "target": INT_TARGET,
                    "fits": False,
                    "flash_bytes": m.flash_bytes,
                    "ram_bytes": m.ram_bytes,
                    "flash_budget_bytes": m.flash_budget_bytes,
                    "ram_budget_bytes": m.ram_budget_bytes,
                    "instructions_per_inference": None,
                    "reason": str(e),
                }
            )
            continue
        rec = manifest.artifacts[INT_TARGET]
        mem = rec["memory"]
        mcu.append(
            {
                "model": label,
                "target": INT_TARGET,
                "fits": True,
                "flash_bytes": mem["flash_bytes"],
                "ram_bytes": mem["ram_bytes"],
                "flash_budget_bytes": mem["flash_budget_bytes"],
                "ram_budget_bytes": mem["ram_budget_bytes"],
                "instructions_per_inference": rec.get("instructions_per_inference"),
                "verification": rec["verification"],
                "integer": rec["integer"],
            }
        )
        twin = load_int_model(bundle, INT_TARGET)
        returns = torch_reward(twin.act, config.episodes, 0)
        row = ModelRow(
            label,
            "int8 weights+activations",
            weights_of(module),
            twin.weight_bytes(),
            returns,
            Paired.of(returns, ref),
            (returns.mean - ref.mean) / abs(ref.mean),
        )
        if config.int_hil_episodes:
            console.print(f"  lockstep HIL: {label} on {INT_TARGET}, {config.int_hil_episodes} episodes")
            d = device_reward(bundle, INT_TARGET, twin.act, config.int_hil_episodes, 0)
            row.hil = {
                "target": INT_TARGET,
                "runner": d.runner,
                "episodes": config.int_hil_episodes,
                "device_returns": d.device.returns,
                "host_returns": d.torch.returns,
                "max_return_diff": d.max_return_diff,
                "max_abs_action_diff": d.max_abs_action_diff,
                "device_mean": d.device.mean,
            }
        rows.append(row)
        if label != "unpruned-int":
            checks[f"{label} runs on {INT_TARGET} with flash under 32 KB"] = mem["flash_bytes"] < INT_FLASH
            checks[f"{label} return within 5% of unpruned float (paired)"] = (
                abs(row.relative_to_float_unpruned) <= INT_RETURN_TOLERANCE
            )
            if row.hil:
                checks[f"{label} lockstep HIL equals the host twin within 1e-3 per episode"] = (
                    row.hil["max_return_diff"] <= TWIN_TOLERANCE
                )
    return rows, mcu, checks


def print_tables(report: Int8Report, console: Console) -> None:
    t = Table(title=f"return, gymnasium Pendulum-v1 seeds 0..{report.config.episodes - 1}, paired with unpruned float")
    for col in ("model", "params", "weight bytes", "mean return", "worst", "Δ vs unpruned float ± s.e.", "Δ %", "HIL"):
        t.add_column(col, justify="right")
    for r in report.models:
        hil = (
            f"{r.hil['target']}: {r.hil['episodes']} ep., max |dev-host| {r.hil['max_return_diff']:.2g}"
            if r.hil
            else "-"
        )
        t.add_row(
            r.model,
            f"{r.params:,}",
            f"{r.weight_bytes:,}",
            f"{r.returns.mean:.2f}",
            f"{r.returns.worst:.2f}",
            f"{r.vs_float_unpruned.mean_diff:+.2f} ± {r.vs_float_unpruned.stderr:.2f}",
            f"{100 * r.relative_to_float_unpruned:+.2f}%",
            hil,
        )
    console.print(t)
    m = Table(title="Cortex-M firmware: flash and RAM against the part, instructions per inference (qemu -icount)")
    for col in ("model", "target", "fits", "flash", "RAM", "instructions/inference"):
        m.add_column(col, justify="right")
    for fw in report.mcu:
        ins = fw.get("instructions_per_inference") or {}
        n = ins.get("mean")
        m.add_row(
            fw["model"],
            fw["target"],
            "yes" if fw["fits"] else "no",
            f"{fw['flash_bytes']:,} / {fw['flash_budget_bytes']:,}",
            f"{fw['ram_bytes']:,} / {fw['ram_budget_bytes']:,}",
            f"{n:,.0f}" if n is not None else "-",
        )
    console.print(m)
    if report.latency:
        lt = Table(title="latency per inference, runtime-free stub, median of round medians (emulated: ratio only)")
        for col in ("model", "target", "median us", "vs unpruned float"):
            lt.add_column(col, justify="right")
        for row in report.latency:
            lt.add_row(
                row["model"],
                row["target"],
                "-" if row["emulated"] else f"{row['median_us']:.2f}",
                f"{row['ratio_to_unpruned_float']:.2f}x",
            )
        console.print(lt)
    for name, ok in report.checks.items():
        console.print(f"{'[green]ok[/]' if ok else '[red]FAILED[/]'}  {name}")


def write_json(report: Int8Report, out: Path) -> None:
    """The report as JSON, written beside ``out`` and renamed into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = Int8BenchConfig()
    p.add_argument("--keep", type=float, default=defaults.keep)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--episodes", type=int, default=defaults.episodes)
    p.add_argument("--targets", default=defaults.targets)
    p.add_argument("--hil-episodes", type=int, default=defaults.hil_episodes)
    p.add_argument("--max-evaluations", type=int, default=defaults.max_evaluations)
    p.add_argument("--int-keep", type=float, default=defaults.int_keep)
    p.add_argument("--int-hil-episodes", type=int, default=defaults.int_hil_episodes)
    p.add_argument("--linux-targets", default=defaults.linux_targets)
    p.add_argument("--rounds", type=int, default=defaults.rounds)
    p.add_argument("--out", type=Path, default=Path("docs/int8_bench.json"))
    a = p.parse_args(argv)
    config = Int8BenchConfig(
        a.keep,
        a.seed,
        a.episodes,
        a.targets,
        a.hil_episodes,
        a.max_evaluations,
        a.int_keep,
        a.int_hil_episodes,
        a.linux_targets,
        a.rounds,
    )
    console = Console(stderr=True, width=None if os.isatty(2) else 160)
    console.print(f"int8 bench: {config}")
    with tempfile.TemporaryDirectory(prefix="int8-bench-") as work:
        report = run(config, Path(work), console)
    print_tables(report, console)
    write_json(report, a.out)
    console.print(f"written: {a.out}")
    return 0 if all(report.checks.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
