"""The bench's microcontroller targets: one firmware bundle per model and target, its flash and RAM against the part's budget.

    python -m tools.bench.mcu [--controller REF.pt] [--pruned P.pt ...] [--targets cortex-m4] [--baseline N,N,...]

A model whose firmware does not fit a target is a result here, not an error: the export stops with
:class:`export.mcu.DoesNotFit`, which carries the linked image's sizes, and the report shows them
against the budget. Each (model, target) pair is exported as its own bundle, so one that does not
fit fails alone. The firmware has no bench mode and qemu-system-arm models no timing: the
instructions it executes per inference (counted by the export's check under ``-icount``) stand in
for time, and are labelled as instructions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from export import DoesNotFit, export_bundle, integer_only, qemu_available, scratch_in, verify_bundle_signature
from targets import parse_target_list
from tools.bench.report import McuMemoryRow
from tools.controllers.load import load_controller
from tools.controllers.native import Controller
from tools.errors import ToolsError
from tools.pipeline.export import visited_states

QEMU_SYSTEM = "qemu-system-arm"


def check_mcu_target(target) -> None:
    """Fail before any work on a microcontroller target this machine cannot build or run: no arm-none-eabi-gcc, no qemu."""
    target.require_compiler()
    why_not = qemu_available(target)
    if why_not:
        raise ToolsError(f"target {target.name!r}: {why_not}: the bench runs the firmware in the loop")


@dataclass
class McuExport:
    """The firmware bundles that were built, and a memory row for every (model, target), fitting or not."""

    bundles: dict[tuple[str, str], Path] = field(default_factory=dict)  # (model, target) -> bundle, only where it fits
    rows: list[McuMemoryRow] = field(default_factory=list)
    instructions_how: str = ""  # how the manifest says the instructions were counted
    cycles_note: str = ""  # why the manifest has no cycle count

    def fits(self, model: str, target: str) -> bool:
        return (model, target) in self.bundles


def _row_from_record(model: str, target, rec: dict) -> McuMemoryRow:
    m = rec["memory"]
    return McuMemoryRow(
        model=model,
        target=target.name,
        fits=bool(m["fits"]),
        flash_bytes=int(m["flash_bytes"]),
        ram_bytes=int(m["ram_bytes"]),
        flash_budget_bytes=int(m["flash_budget_bytes"]),
        ram_budget_bytes=int(m["ram_budget_bytes"]),
        weights_bytes=int(m["weights_bytes"]),
        tensor_bytes=int(m["tensor_bytes"]),
        arena_bytes=int(m["arena_bytes"]),
        stack_bytes=int(m["stack_bytes"]),
        qemu_machine=target.qemu_machine,
        instructions_per_inference=rec.get("instructions_per_inference"),
        cycles_per_inference=rec.get("cycles_per_inference"),
        verification=rec.get("verification", {}).get("status"),
        firmware_bytes=int(rec["bytes"]),
    )


def _row_from_misfit(model: str, target, error) -> McuMemoryRow:
    m = error.memory
    return McuMemoryRow(
        model=model,
        target=target.name,
        fits=False,
        flash_bytes=m.flash_bytes,
        ram_bytes=m.ram_bytes,
        flash_budget_bytes=m.flash_budget_bytes,
        ram_budget_bytes=m.ram_budget_bytes,
        weights_bytes=m.weights_bytes,
        tensor_bytes=m.tensor_bytes,
        arena_bytes=m.arena_bytes,
        stack_bytes=m.stack_bytes,
        qemu_machine=target.qemu_machine,
        reason=str(error),
    )


def export_mcu(
    models: dict[str, Controller],
    targets,
    folder: Path,
    n_parity: int,
    seed: int,
    say: Callable[[str], None],
    tick: Callable[[], None],
    sign: Path | None = None,
    public_key: Path | None = None,
) -> McuExport:
    """One verified firmware bundle ``<model>-<target>`` per model and target; a misfit is recorded with its sizes.

    ``sign``: private key each bundle is signed with; ``public_key``: each bundle's signature is then checked with it.
    """
    out = McuExport()
    for t in targets:
        for label, c in models.items():
            say(f"firmware: {label} for {t.name}")
            path = folder / f"{label}-{t.name}"
            try:
                manifest = export_bundle(
                    c.module,
                    c.spec,
                    [t],
                    path,
                    source_path=c.path,
                    source_sha256=c.sha256,
                    architecture=c.architecture,
                    n_parity=n_parity,
                    seed=seed,
                    sign=sign,
                    # an integer-only part calibrates its activations on states the controller visits
                    parity_observations=visited_states(c) if integer_only(t) else None,
                )
                if public_key is not None:
                    verify_bundle_signature(path, public_key)
            except DoesNotFit as e:
                out.rows.append(_row_from_misfit(label, t, e))
            else:
                rec = manifest.artifacts[t.name]
                out.rows.append(_row_from_record(label, t, rec))
                out.bundles[(label, t.name)] = path
                out.instructions_how = (rec.get("instructions_per_inference") or {}).get("how", out.instructions_how)
                out.cycles_note = rec.get("cycles_note", out.cycles_note)
            tick()
    return out


def mcu_versions(targets) -> dict:
    """First line of ``--version`` of the firmware toolchain and emulator, once each."""
    out = {}
    for tool in dict.fromkeys([*(t.cc for t in targets), *([QEMU_SYSTEM] if targets else [])]):
        try:
            first = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()
        except OSError:
            first = []
        out[tool] = first[0].strip() if first else None
    return out


def mcu_notes(mcu: McuExport) -> list[str]:
    """What a reader needs to read the microcontroller table: misfits with their sizes, and what the instruction count is."""
    notes = []
    for r in mcu.rows:
        if not r.fits:
            over = [
                f"{what} {used / 1024:.1f} KB > {budget / 1024:.0f} KB"
                for what, used, budget in (
                    ("flash", r.flash_bytes, r.flash_budget_bytes),
                    ("RAM", r.ram_bytes, r.ram_budget_bytes),
                )
                if used > budget
            ]
            notes.append(
                f"{r.model} does not fit {r.target}: {'; '.join(over)}; no firmware was kept and it was not "
                "run in the loop there"
            )
    if mcu.instructions_how:
        notes.append(f"microcontroller 'instructions/inference': {mcu.instructions_how}")
    if mcu.cycles_note:
        notes.append(f"microcontroller cycles: {mcu.cycles_note}")
    return notes


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.bench.mcu``: flash, RAM and instructions per inference of controllers on microcontrollers."""
    try:
        return _main(argv)
    except ToolsError as e:  # bad input: one line and exit 2, as the command line does
        print(f"bench_mcu: error: {e}", file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench.mcu", description=main.__doc__)
    p.add_argument("--controller", type=Path, default=None, help="unpruned controller (default: the bundled reference)")
    p.add_argument(
        "--env",
        default=None,
        metavar="ENV_ID",
        help="gymnasium env a foreign --controller is for (its sizes and bounds; default Pendulum-v1)",
    )
    p.add_argument("--pruned", type=Path, action="append", default=[], help="a pruned controller file; repeatable")
    p.add_argument(
        "--targets", default="cortex-m4", help="microcontroller targets, comma-separated (default cortex-m4)"
    )
    p.add_argument(
        "--baseline",
        default="",
        help="instructions per inference to compare with, one per model in order (e.g. an earlier run's)",
    )
    p.add_argument("--n-parity", type=int, default=100, help="observations each firmware is checked on (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("bench_mcu.json"))
    args = p.parse_args(argv)
    console = Console(stderr=True, width=160)
    targets = parse_target_list(args.targets)
    for t in targets:
        if t.kind != "mcu":
            raise ToolsError(f"--targets: {t.name!r} is not a microcontroller target")
        check_mcu_target(t)
    models = {"unpruned": load_controller(args.controller, env=args.env)}
    # a file named pruned.pt is labelled 'pruned', not 'pruned-pruned'
    models.update(
        {
            path.stem if path.stem.startswith("pruned") else f"pruned-{path.stem}": load_controller(path)
            for path in args.pruned
        }
    )
    baseline = [float(b) for b in args.baseline.split(",") if b.strip()]
    if baseline and len(baseline) != len(models):
        raise ToolsError(f"--baseline: {len(baseline)} numbers for {len(models)} models")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with scratch_in(args.out.parent, "bench_mcu.") as tmp:
        out = export_mcu(models, targets, Path(tmp), args.n_parity, args.seed, console.print, lambda: None)
    table = Table(title=f"firmware per model and target ({out.instructions_how})")
    for col in ("model", "target", "widths", "flash B", "weights B", "flash - weights B", "RAM B", "instr/inference"):
        table.add_column(col, justify="right")
    if baseline:
        table.add_column("x baseline", justify="right")
    order = list(models)
    result_rows = []
    for r in out.rows:
        ipi = (r.instructions_per_inference or {}).get("mean")
        hidden = models[r.model].architecture.get("hidden", [])
        cells = [r.model, r.target, "-".join(str(h) for h in hidden), str(r.flash_bytes), str(r.weights_bytes)]
        cells += [str(r.flash_bytes - r.weights_bytes), str(r.ram_bytes), "-" if ipi is None else f"{ipi:,.0f}"]
        row = asdict(r)
        if baseline:
            ratio = None if ipi is None else ipi / baseline[order.index(r.model)]
            cells.append("-" if ratio is None else f"{ratio:.3f}")
            row["baseline_instructions"] = baseline[order.index(r.model)]
            row["instructions_over_baseline"] = ratio
        table.add_row(*cells)
        result_rows.append(row)
    console.print(table)
    result = {"seed": args.seed, "rows": result_rows, "versions": mcu_versions(targets), "notes": mcu_notes(out)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
