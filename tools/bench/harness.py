"""The bench, start to end: prune, export, then measure latency, memory and reward for every model side by side.

    report = run_bench(BenchConfig(keeps=[0.25], targets=["x86_64", "cortex-a72"]), workdir, console)

Pruning goes through :func:`tools.pipeline.prune.prune_controller_budgets` (the objective, stability check
and re-fit of ``prune-and-export prune``; a method's budgets solved as one continuation, largest first,
each budget's model saved), export through :func:`export.export_bundle`, latency through :mod:`tools.bench.latency`, reward through lockstep HIL (:mod:`tools.bench.reward`). Linux targets share
one bundle per model; each microcontroller target gets its own bundle per model (:mod:`tools.bench.mcu`),
so a firmware that does not fit its part is reported with its sizes instead of ending the run.
The caller owns ``workdir``; :func:`bench_to_folder` runs the bench into a temp folder, writes the report
files and renames it into place.

The bench sits above tools/pipeline/: it calls prune_controller_budgets, export and HIL for every model.
"""

from __future__ import annotations

import copy
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from export import (
    Manifest,
    export_bundle,
    export_onnx,
    integer_only,
    load_int_model,
    move_into_place,
    read_manifest,
    verify_bundle_signature,
)
from export import versions as export_versions
from prune import find_groups, footprint
from targets import QemuRunner, parse_target_list, runner_for
from tools.bench.folder import temp_dir_for
from tools.bench.latency import PYTHON_RUNTIMES, LatencyStats, StubBench, measure_python, measure_stub, python_runtimes
from tools.bench.mcu import check_mcu_target, export_mcu, mcu_notes, mcu_versions
from tools.bench.report import (
    UNPRUNED,
    BenchReport,
    LatencyRow,
    ModelRecord,
    RewardRow,
    RobustRow,
    write_json,
    write_markdown,
)
from tools.bench.report_plots import write_plots
from tools.bench.reward import DeviceReward, Paired, RewardStats, device_reward, torch_reward
from tools.controllers.load import bench_copy, load_controller
from tools.controllers.native import Controller
from tools.controllers.source import ControllerSource
from tools.errors import ToolsError
from tools.pipeline.choices import DEFAULT_METHOD
from tools.pipeline.hil import FIDELITY
from tools.pipeline.prune import (
    PrunedController,
    band_tolerance,
    print_prune_table,
    prune_controller_budgets,
    save_pruned_controller,
)
from tools.plant.aggregate import Aggregate
from tools.plant.episodes import SEARCH_EPISODES, SEARCH_SEED, episode_seeds
from tools.plant.policy import as_policy
from tools.plant.robust import Robustness
from tools.plant.scenarios import select_scenarios
from tools.scale import Cell, Executor, make_executor, run_cells

NOISY_SPREAD = 0.2  # a latency whose rounds disagree more than this is flagged in the report's notes
# the budget band [keep - this, keep], widened on a model whose one unit is coarser (band_tolerance)
BAND_TOLERANCE = 0.01


@dataclass
class Sizes:
    """How much each measurement samples: the full run, or --quick for tests."""

    rounds: int  # interleaved rounds of the in-process runtimes
    stub_rounds: int  # interleaved runs of the stub's bench per target (each a fresh process, so short and many)
    calls: int  # timed calls per round (torch, onnxruntime, TVM from Python, native stub)
    emulated_calls: int  # timed calls per round of a stub under qemu-user
    warmup: int
    search_episodes: int  # fast-plant episodes per objective evaluation while pruning
    max_evaluations: int  # gd's objective evaluations while pruning

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(
                rounds=2, stub_rounds=2, calls=60, emulated_calls=20, warmup=20, search_episodes=8, max_evaluations=4
            )
        return cls(
            rounds=5,
            stub_rounds=9,
            calls=2000,
            emulated_calls=300,
            warmup=200,
            search_episodes=SEARCH_EPISODES,
            max_evaluations=60,
        )


@dataclass
class BenchConfig:
    """What to compare and how hard to measure."""

    controller: Path | None = None  # None: the bundled reference controller
    keeps: list[float] = field(default_factory=lambda: [0.25])
    methods: list[str] = field(default_factory=lambda: [DEFAULT_METHOD])
    targets: list[str] = field(default_factory=lambda: ["x86_64"])
    episodes: int = 100
    seed: int = 0
    quick: bool = False
    sign: Path | None = None  # private key: every bundle is signed with it
    public_key: Path | None = None  # its public half: every bundle's signature is checked, and every device checks it
    scenarios: str | None = None  # --scenarios: a set name or scenario names; None: the nominal plant only
    robust_objective: str | None = None  # --robust-objective (with scenarios; None: mean)
    executor: str = "local"  # where the prune cells and the Linux compiles run: local or ray (tools.scale)
    ray_address: str | None = None
    quantize: str = "off"  # precision of the pruned models' weights: off | int8 | auto (prune.precision)
    flash_budget: int | None = None  # weight bytes every pruned model must fit (None: no cap)

    def robustness(self, env_id: str) -> Robustness | None:
        """The scenarios and aggregate of ``scenarios`` / ``robust_objective`` on env_id's plant (None: nominal only)."""
        if self.scenarios is None:
            return None
        return Robustness(select_scenarios(self.scenarios, env_id), Aggregate.parse(self.robust_objective or "mean"))

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("controller", "sign", "public_key"):
            d[key] = str(d[key]) if d[key] else None
        return d


def _footprint(module: torch.nn.Module, example: torch.Tensor):
    """prune's exact parameter / multiply-add count, for any MLP (pruned or not)."""
    with torch.no_grad():
        return footprint(find_groups(module, example))


@dataclass(frozen=True)
class PruneCell:
    """One bench cell's work, run wherever the executor puts it: a method's budgets solved as one continuation.

    A cell (:class:`tools.scale.Cell`) is one method at the config's seed, its budgets in ``options["keeps"]``
    (largest first); it carries the controller itself, not a path, so a worker on another machine needs
    nothing but the code. The search is ``prune-and-export prune``'s (same objective, checks and re-fit);
    the models come back and are written here (:func:`_prune`).
    """

    controller: Controller
    sizes: Sizes
    robustness: Robustness | None = None
    tolerance: float = BAND_TOLERANCE
    quantize: str = "off"  # precision of the weights (prune.precision)
    flash_budget: int | None = None

    def __call__(self, cell: Cell) -> list[PrunedController]:
        return prune_controller_budgets(
            copy.deepcopy(self.controller),  # in-process (local) the cells must not share one module
            list(cell.options["keeps"]),
            cell.method,
            seed=cell.seed,
            judge_episodes=0,
            search_episodes=self.sizes.search_episodes,
            max_evaluations=self.sizes.max_evaluations,
            robustness=self.robustness,
            tolerance=self.tolerance,
            quantize=self.quantize,
            flash_budget=self.flash_budget,
        )


def prune_cells(config: BenchConfig) -> list[Cell]:
    """The bench's prune cells: one per method (its budgets, largest first, solved as one continuation)."""
    keeps = tuple(sorted(config.keeps, reverse=True))
    return [Cell(method, keeps[0], config.seed, options={"keeps": keeps}) for method in config.methods]


def _prune(
    config: BenchConfig,
    base: Controller,
    folder: Path,
    sizes: Sizes,
    console: Console,
    executor: Executor | None,
    robustness: Robustness | None,
    tolerance: float = BAND_TOLERANCE,
) -> dict[str, list[tuple[Controller, bool, list[str]]]]:
    """method -> one pruned controller per budget (in the order of ``config.keeps``), the cells run on ``executor``.

    Each budget's model is written to ``folder/<method>@<keep>.pt``. One budget is exactly one
    ``prune-and-export prune``.
    """
    cells = prune_cells(config)
    made: dict[str, list[tuple[Controller, bool, list[str]]]] = {}
    for cell, pruned in zip(
        cells,
        run_cells(PruneCell(base, sizes, robustness, tolerance, config.quantize, config.flash_budget), cells, executor),
    ):
        by_keep = {}
        for keep, p in zip(cell.options["keeps"], pruned):
            print_prune_table(console, p.summary, sizes.search_episodes, 0)
            if not p.feasible:
                console.print(
                    f"[red]no feasible candidate[/] at keep {keep:g} ({cell.method}): {p.result.why_infeasible}"
                )
            files = save_pruned_controller(p, base, folder / f"{cell.method}@{keep:g}.pt")
            failed = list(p.summary["failed_constraints"])
            by_keep[keep] = (load_controller(files["controller"]), p.feasible, failed)  # a graph's: <stem>.pt2
        made[cell.method] = [by_keep[k] for k in config.keeps]
    return made


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "arch": platform.machine(),
        "cores": os.cpu_count() or 1,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_1min_at_start": _load_average(),
        "torch_threads": torch.get_num_threads(),
    }


def _load_average() -> float | None:
    """The 1-minute load average: how much other work shared the CPU (None where the OS has none)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _versions(manifest_versions: dict, targets) -> dict:
    """The bundle's toolchain versions (as export recorded them), gymnasium's, qemu-user's for emulated targets,
    and the firmware toolchain's and qemu-system-arm's for microcontroller targets."""
    out = dict(manifest_versions)
    try:
        out["gymnasium"] = metadata.version("gymnasium")
    except metadata.PackageNotFoundError:
        out["gymnasium"] = None
    out.update(mcu_versions([t for t in targets if t.kind == "mcu"]))
    for t in (t for t in targets if t.kind == "linux"):
        r = runner_for(t)
        if isinstance(r, QemuRunner) and r.qemu not in out:
            first = subprocess.run([r.qemu, "--version"], capture_output=True, text=True).stdout.splitlines()
            out[r.qemu] = first[0].split("version")[-1].strip() if first else None
    return out


def check_target(target) -> None:
    """Fail before any work on a target the bench cannot run: unknown kind, no compiler, no qemu."""
    if target.kind == "mcu":
        check_mcu_target(target)
        return
    if target.kind != "linux":
        raise ToolsError(
            f"target {target.name!r} is a {target.kind} target: the bench runs the Linux stub or "
            "microcontroller firmware"
        )
    target.require_compiler()
    runner_for(target).check()


class _Stages:
    """A rich progress bar over the bench's stages (transient: the tables replace it)."""

    def __init__(self, console: Console, total: int) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.bar.add_task("bench", total=total)

    def say(self, what: str) -> None:
        self.bar.update(self.task, description=what)

    def tick(self) -> None:
        self.bar.advance(self.task)


def run_bench(config: BenchConfig, workdir: Path, console: Console, command: str = "") -> BenchReport:
    """Prune, export and measure every model into ``workdir``; returns the report (files not yet written)."""
    start = time.perf_counter()
    machine = _machine()  # the load average before this run adds its own
    torch.set_num_threads(1)  # batch-1 latency is single-threaded; so is everything else on a shared machine
    torch.manual_seed(config.seed)
    sizes = Sizes.of(config.quick)
    targets = parse_target_list(",".join(config.targets))
    for t in targets:
        check_target(t)
    linux = [t for t in targets if t.kind == "linux"]
    mcus = [t for t in targets if t.kind == "mcu"]
    runners = {t.name: runner_for(t).describe() for t in linux}  # the Linux stubs' runners (latency is timed there)
    emulated = {t.name for t in linux if isinstance(runner_for(t), QemuRunner)}
    host = next((t.name for t in linux if t.runs_on_host), None)  # whose library TVM-from-Python loads
    base = load_controller(config.controller)
    console.print(
        f"bench: controller {base.path} (sha256 {base.sha256[:12]}), seed {config.seed}, "
        f"keep {', '.join(f'{k:g}' for k in config.keeps)}, methods {', '.join(config.methods)}, "
        f"targets {', '.join(t.name for t in targets)}, {config.episodes} episodes"
        + (" (quick)" if config.quick else "")
    )

    n_models = 1 + len(config.keeps) * len(config.methods)
    total = (
        n_models
        - 1
        + n_models * (bool(linux) + len(mcus))
        + (sizes.rounds if host else 0)
        + sizes.stub_rounds * len(linux)
        + n_models * len(targets)
    )
    stages = _Stages(console, total=total)
    robustness = config.robustness(base.spec.env_id)
    with torch.no_grad():
        tolerance, widened = band_tolerance(
            find_groups(base.module, torch.as_tensor(base.spec.sample_observations(8, config.seed))), BAND_TOLERANCE
        )
    executor = make_executor(config.executor, config.ray_address) if config.executor != "local" else None
    if executor is not None:
        console.print(f"bench cells and compiles run on {executor.name} ({executor.workers} workers)")
    with stages.bar:
        try:  # the fan-outs: prune cells, the Linux targets' compiles
            models, meta = _make_models(
                config, base, workdir / "models", sizes, stages, console, executor, robustness, tolerance
            )
            bundles = _export(models, linux, workdir / "bundles", config, stages, executor) if linux else {}
        finally:
            if executor is not None:
                executor.close()
        mcu = export_mcu(
            models,
            mcus,
            workdir / "bundles",
            _n_parity(config),
            config.seed,
            stages.say,
            stages.tick,
            sign=config.sign,
            public_key=config.public_key,
        )
        obs = base.spec.sample_observations(sizes.calls, config.seed)
        latency: dict[tuple[str, str, str], LatencyStats] = {}
        if host is not None:
            stages.say("latency: torch, onnxruntime, TVM from Python")
            calls = {m: python_runtimes(bundles[m], models[m].module, f"{host}.so") for m in models}
            for (m, runtime), s in measure_python(calls, obs, sizes.rounds, sizes.warmup, stages.tick).items():
                latency[(m, runtime, host)] = s
        stubs: dict[str, dict[str, StubBench]] = {}
        for name in runners:
            stages.say(f"latency: stub on {name}")
            n, warmup = (sizes.emulated_calls, sizes.warmup // 10) if name in emulated else (sizes.calls, sizes.warmup)
            stubs[name] = measure_stub(
                bundles, name, obs[:n], sizes.stub_rounds, warmup, stages.tick, public_key=config.public_key
            )
            latency.update({(m, "stub", name): sb.latency for m, sb in stubs[name].items()})
        rewards: dict[tuple[str, str], DeviceReward] = {}
        for name in runners:
            for m, c in models.items():
                stages.say(f"reward: {m} through the stub on {name} ({config.episodes} episodes)")
                rewards[(m, name)] = device_reward(
                    bundles[m],
                    name,
                    as_policy(c.module),
                    config.episodes,
                    config.seed,
                    public_key=config.public_key,
                    env_id=base.spec.env_id,
                )
                stages.tick()
        twins = {t.name for t in mcus if integer_only(t)}
        for t in mcus:
            for m, c in models.items():
                if mcu.fits(m, t.name):
                    stages.say(
                        f"reward: {m} through the firmware on {t.name} under qemu-system-arm "
                        f"({config.episodes} episodes)"
                    )
                    bundle = mcu.bundles[(m, t.name)]
                    # an integer-only part runs the integer model: the host plays its exact twin from the bundle
                    player = load_int_model(bundle, t.name).act if t.name in twins else as_policy(c.module)
                    rewards[(m, t.name)] = device_reward(
                        bundle,
                        t.name,
                        player,
                        config.episodes,
                        config.seed,
                        public_key=config.public_key,
                        env_id=base.spec.env_id,
                    )
                stages.tick()
        # the torch reference of a model that runs on no requested device (it fits none of the parts)
        torch_only = {
            m: torch_reward(as_policy(c.module), config.episodes, config.seed, base.spec.env_id)
            for m, c in models.items()
            if not any(m == k[0] and k[1] not in twins for k in rewards)
        }
        robust = _robust_rows(models, robustness, config, base.spec.env_id) if robustness is not None else []

    example = torch.as_tensor(base.spec.sample_observations(8, config.seed))
    any_bundle = {
        m: bundles.get(m) or next((mcu.bundles[(m, t.name)] for t in mcus if mcu.fits(m, t.name)), None) for m in models
    }
    records = [
        _record(
            m,
            c,
            meta[m],
            _manifest_or_onnx(any_bundle[m], c, config),
            {t: stubs[t][m].peak_rss_kb for t in runners},
            example,
        )
        for m, c in models.items()
    ]
    for rec in records:
        rec.params_kept = rec.params / records[0].params
    rows = _latency_rows(latency, runners, emulated, list(models))
    for row in rows:  # each stub row carries the check its actions passed before it was timed
        bench = stubs.get(row.target, {}).get(row.model) if row.runtime == "stub" else None
        if bench is not None and bench.check is not None:
            row.check = bench.check.to_dict()
    notes = [
        f"{t} runs under {runners[t]}: its times are emulated, so only ratios to the unpruned model are shown; "
        "its peak RSS is the emulator's process"
        for t in sorted(emulated)
    ]
    notes += [widened] if widened else []
    notes += [
        f"{m}: no candidate met every constraint (failed: {', '.join(failed) or 'none named'}; budget band "
        f"[keep - {tolerance:.4g}, keep]); the best candidate found is benchmarked"
        for m, (_, _, ok, failed) in meta.items()
        if not ok
    ]
    if config.quantize != "off" or config.flash_budget is not None:  # the pruned models' weights, said once
        notes.append(
            f"pruned models: --quantize {config.quantize}"
            + (f", --flash-budget {config.flash_budget:,} B" if config.flash_budget is not None else "")
            + " (each model's precision and why: the prune summary beside it, models/<label>.widths.json); "
            "the unpruned model keeps float weights"
        )
    noisy = [f"{r.model} {r.runtime} on {r.target} ({r.spread:.0%})" for r in rows if r.spread > NOISY_SPREAD]
    if noisy:
        notes.append(
            f"latency rounds disagree by more than {NOISY_SPREAD:.0%} for: {'; '.join(noisy)}: other work was "
            "sharing the CPU (load average at start and end in 'machine'); rerun on an idle machine for tighter figures"
        )
    device_names = {**{t: f"stub:{t}" for t in runners}, **{t.name: f"firmware:{t.name}" for t in mcus}}
    reward_rows = _reward_rows(rewards, torch_only, list(models), device_names, twins)
    notes += mcu_notes(mcu)
    notes += [
        f"{r.model} on {r.runtime}: no paired difference: the unpruned controller does not fit {r.runtime.split(':', 1)[1]}"
        for r in reward_rows
        if r.model != UNPRUNED and r.runtime != "torch" and r.vs_unpruned is None
    ]
    # export already held every action to 1e-5 of onnxruntime; over 200 closed-loop steps such float differences
    # can grow, which HIL's lockstep contract bounds per episode: say so where a model crosses it
    notes += [
        f"{r.model} on {r.runtime}: the device's return differs from torch's by up to {r.vs_torch_max_abs:.1e} "
        f"in an episode (HIL's lockstep tolerance is {FIDELITY:g})"
        for r in reward_rows
        if r.vs_torch_max_abs is not None and r.vs_torch_max_abs > FIDELITY
    ]
    if host is None:
        notes.append(
            ("no requested Linux target runs on this machine" if linux else "no Linux target requested")
            + ": torch, onnxruntime and TVM from Python were not timed"
        )
    machine["load_average_1min_at_end"] = _load_average()
    return BenchReport(
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=time.perf_counter() - start,
        command=command or " ".join(shlex.quote(a) for a in ["prune-and-export", *sys.argv[1:]]),
        config={
            **config.to_dict(),
            **asdict(sizes),
            "env_id": base.spec.env_id,
            "library_for_python": host,
            "budget_tolerance": tolerance,
        },
        machine=machine,
        versions=_versions(_bundle_versions(any_bundle), targets),
        seeds={
            "seed": config.seed,
            "episodes": episode_seeds(config.episodes, config.seed),
            "prune_search_episodes": [SEARCH_SEED, SEARCH_SEED + sizes.search_episodes - 1],
            "observations": config.seed,
        },
        models=records,
        latency=rows,
        reward=reward_rows,
        notes=notes,
        mcu_memory=mcu.rows,
        robust=robust,
    )


def _make_models(
    config: BenchConfig,
    base: Controller,
    folder: Path,
    sizes: Sizes,
    stages: _Stages,
    console: Console,
    executor: Executor | None = None,
    robustness: Robustness | None = None,
    tolerance: float = BAND_TOLERANCE,
) -> tuple[dict[str, Controller], dict[str, tuple]]:
    """label -> controller (the unpruned one first, then one per method and budget), and (method, keep, feasible)."""
    models: dict[str, Controller] = {UNPRUNED: base}
    meta: dict[str, tuple] = {UNPRUNED: (None, None, True, [])}
    folder.mkdir(parents=True)
    stages.say(
        f"pruning {', '.join(config.methods)} at {', '.join(f'{k:g}' for k in sorted(config.keeps, reverse=True))}"
        + ("" if executor is None else f" on {executor.name} ({executor.workers} workers)")
    )
    for method, made in _prune(config, base, folder, sizes, console, executor, robustness, tolerance).items():
        for keep, (controller, feasible, failed) in zip(config.keeps, made):
            label = f"{method}@{keep:g}"
            models[label], meta[label] = controller, (method, keep, feasible, failed)
            stages.tick()
    return models, meta


def _robust_rows(
    models: dict[str, Controller], robustness: Robustness, config: BenchConfig, env_id: str
) -> list[RobustRow]:
    """Every model under the scenarios (torch, the env's scenario plant, the reward's seeds), its aggregate beside the unpruned one's."""
    judged = {m: robustness.judge(c.module, config.episodes, config.seed, env_id) for m, c in models.items()}
    base = judged[UNPRUNED]["value"]
    return [
        RobustRow(
            m,
            j["set"],
            j["aggregate"],
            j["value"],
            j["mean"],
            j["balanced_share"],
            None if m == UNPRUNED else j["value"] - base,
        )
        for m, j in judged.items()
    ]


def _n_parity(config: BenchConfig) -> int:
    """Observations each export checks against onnxruntime."""
    return 200 if config.quick else 1000


def _export(
    models: dict[str, Controller],
    targets,
    folder: Path,
    config: BenchConfig,
    stages: _Stages,
    executor: Executor | None = None,
) -> dict[str, Path]:
    """One verified bundle per model (ONNX + a TVM library per Linux target), signed with ``config.sign`` if given
    and then checked against ``config.public_key`` before anything of it is loaded or run; the targets'
    compiles run on ``executor`` (None: here)."""
    bundles = {}
    for label, c in models.items():
        stages.say(f"exporting {label}")
        bundles[label] = folder / label
        export_bundle(
            c.module,
            c.spec,
            targets,
            bundles[label],
            source_path=c.path,
            source_sha256=c.sha256,
            architecture=c.architecture,
            n_parity=_n_parity(config),
            seed=config.seed,
            sign=config.sign,
            map_fn=map if executor is None else executor.map,
        )
        if config.public_key is not None:
            verify_bundle_signature(bundles[label], config.public_key)
        stages.tick()
    return bundles


def _manifest_or_onnx(bundle: Path | None, c: Controller, config: BenchConfig) -> Manifest | int:
    """The model's bundle manifest; for a model with no bundle (it fits no requested part), its ONNX size alone."""
    if bundle is not None:
        return read_manifest(bundle)
    model, _ = export_onnx(c.module, c.spec, n_parity=_n_parity(config), seed=config.seed)
    return len(model.SerializeToString())


def _bundle_versions(bundles: dict[str, Path | None]) -> dict:
    """The toolchain versions the first bundle recorded (export's own list if no model produced a bundle)."""
    first = next((b for b in bundles.values() if b is not None), None)
    return read_manifest(first).versions if first is not None else export_versions()


def _record(
    label: str, c: Controller, meta: tuple, manifest: Manifest | int, rss: dict[str, int], example: torch.Tensor
) -> ModelRecord:
    """Memory footprint of one model: counted from the module, sizes from its bundle, RSS from its stub runs."""
    fp = _footprint(c.module, example)
    method, keep, feasible, failed = meta
    return ModelRecord(
        label=label,
        method=method,
        keep=keep,
        feasible=feasible,
        file=str(c.path) if label == UNPRUNED else f"models/{label}.pt",
        sha256=c.sha256,
        hidden=list(c.architecture.get("hidden", [])),
        params=fp.params,
        params_kept=1.0,
        weight_bytes=sum(p.numel() * p.element_size() for p in c.module.parameters()),
        macs=fp.macs,
        onnx_bytes=int(manifest.onnx["bytes"]) if isinstance(manifest, Manifest) else manifest,
        library_bytes={t: int(a["bytes"]) for t, a in manifest.artifacts.items() if a.get("kind") != "mcu"}
        if isinstance(manifest, Manifest)
        else {},
        stub_peak_rss_kb=rss,
        failed_constraints=failed,
    )


def _latency_rows(
    latency: dict[tuple[str, str, str], LatencyStats], runners: dict[str, str], emulated: set[str], models: list[str]
) -> list[LatencyRow]:
    """Rows by runtime, target, model; emulated ones keep only their ratio to the unpruned model."""
    rows = []
    for (m, r, t), s in latency.items():
        hidden = r == "stub" and t in emulated
        row = LatencyRow(
            m,
            r,
            t,
            runners[t] if r == "stub" else "in-process",
            hidden,
            s.n,
            s.rounds,
            s.spread,
            s.median_us / latency[(UNPRUNED, r, t)].median_us,
        )
        if not hidden:
            row.median_us, row.p99_us, row.max_us = s.median_us, s.p99_us, s.max_us
        rows.append(row)
    order = {r: i for i, r in enumerate((*PYTHON_RUNTIMES, "stub"))}
    return sorted(rows, key=lambda r: (order[r.runtime], r.target, models.index(r.model)))


def _reward_rows(
    rewards: dict[tuple[str, str], DeviceReward],
    torch_only: dict[str, RewardStats],
    models: list[str],
    devices: dict[str, str],
    twins: set[str] | None = None,
) -> list[RewardRow]:
    """torch (HIL's host reference), then each target's device (``devices``: target -> runtime label); paired against unpruned.

    A model runs on a microcontroller target only where its firmware fits: no row where it does not,
    and no paired difference where the unpruned one does not.
    """

    def torch_of(m: str) -> RewardStats:  # gymnasium is deterministic: every target's HIL has the same reference
        float_devices = [t for t in devices if t not in (twins or set())]  # an integer part's reference is its twin
        return next((rewards[(m, t)].torch for t in float_devices if (m, t) in rewards), None) or torch_only[m]

    rows = [
        RewardRow(m, "torch", torch_of(m), None if m == UNPRUNED else Paired.of(torch_of(m), torch_of(UNPRUNED)))
        for m in models
    ]
    for t, runtime in devices.items():
        base = rewards.get((UNPRUNED, t))
        rows += [
            RewardRow(
                m,
                runtime,
                rewards[(m, t)].device,
                None if m == UNPRUNED or base is None else Paired.of(rewards[(m, t)].device, base.device),
                rewards[(m, t)].max_return_diff,
            )
            for m in models
            if (m, t) in rewards
        ]
    return rows


def bench_to_folder(
    config: BenchConfig,
    out: Path,
    force: bool = False,
    source: ControllerSource | None = None,
    console: Console | None = None,
    command: str = "",
) -> BenchReport:
    """Run the bench and write ``out`` (report.json, report.md, plots, models/, bundles/) atomically.

    ``source`` says how to read ``config.controller`` when it is a foreign file: its canonical MLP is
    written as ``out/controller.pt`` and benchmarked (a graph that is no plain MLP, e.g. with its
    observation normaliser: ``out/controller.pt2``, see :func:`tools.controllers.load.bench_copy`).
    """
    console = console or Console(quiet=True)
    tmp = temp_dir_for(out, force)
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a report is meant to be read by others
        original = config.controller
        native = bench_copy(source, tmp / "controller.pt") if source is not None else None  # a graph: controller.pt2
        config.controller = native or original
        report = run_bench(config, tmp, console, command=command)
        if native:
            report.config.update(controller=str(out / native.name), source_controller=str(original))
        report.files = {**write_plots(report, tmp), "json": "report.json", "markdown": "report.md"}
        write_json(report, tmp / "report.json")
        write_markdown(report, tmp / "report.md")
        move_into_place(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return report
