"""Microcontroller artifacts: TVM kernels as an object file, the generated C driver, a firmware image.

For a target of kind ``mcu`` (``targets/registry.py``: cortex-m4, cortex-m7, ...) the export

1. lowers the ONNX graph with the same pipeline as the Linux libraries (fused, weights folded, hand
   schedule at the target's vector width) and compiles only the kernels, for the target's TVM triple,
   into ``<target>_kernels.o``;
2. writes ``<target>_model.c`` (:mod:`export.mcu.codegen`): weights in flash, static tensors, a
   workspace arena sized at export time, kernel calls in graph order;
3. links the firmware ``<target>.elf`` (``firmware_stub/mcu``: startup, UART0, frame server) with
   ``arm-none-eabi-gcc`` and reads flash and RAM from the linked image; an image larger than the
   target's ``flash_kb``/``ram_kb`` fails the export with the sizes named;
4. verification (:func:`verify_mcu`): the same C built for this host with the kernels compiled for
   the host is checked against onnxruntime, then the firmware itself answers frames under
   ``qemu-system-arm`` (:mod:`export.mcu.session`) and is checked the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import tvm

import export.frames as frames
from export.bundle import file_record
from export.errors import ExportError
from export.fast_math import fast_math as fast_math_transform
from export.kernel_chain import CONSTANT, kernel_chain
from export.mcu.codegen import arena_bytes, generate_c
from export.mcu.schedule import schedule_module_scalar
from export.mcu.session import FirmwareSession, qemu_available
from export.parity import Comparison, compare
from export.runtime import ffi_include_dir
from export.spec import ControllerSpec
from export.tvm_compile import import_onnx, lower
from export.verification import FAILED, NOT_VERIFIED, VERIFIED, Verification
from targets import Target

FIRMWARE_SOURCES = Path(__file__).resolve().parents[2] / "firmware_stub" / "mcu"
MODEL_HEADER = "pae_mcu_model.h"
# -mfpu of each core's FPU (what TVM's mcpu implies): M4F single precision, M7 double precision
FPU_OF_CPU = {"cortex-m4": "fpv4-sp-d16", "cortex-m7": "fpv5-d16", "cortex-m33": "fpv5-sp-d16"}
STACK_BYTES = 4096  # reserved stack; verification fails if the firmware under qemu used more than STACK_LIMIT of it
STACK_LIMIT = 0.75
HOST_TVM = {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}  # the kernels again, for the host check of the same C
FLASH_SECTIONS = (
    ".isr_vector",
    ".text",
    ".rodata",
    ".got",
    ".ARM.extab",
    ".ARM.exidx",
    ".data",
)  # .data's initial values too
RAM_SECTIONS = (".stack", ".data", ".bss")
INSTRUCTION_RESOLUTION = 40  # one SysTick tick at 25 MHz = 40 instructions at qemu -icount shift=0
INSTRUCTIONS_HOW = (
    "instructions executed per inference under qemu-system-arm -icount shift=0 (SysTick-timed, "
    "40-instruction resolution); not a cycle count: a Cortex-M4 needs at least one cycle per "
    "instruction, the dual-issue Cortex-M7 can need fewer"
)
WORKSPACE_SLOTS = {"__TVMBackendAllocWorkspace", "__TVMBackendFreeWorkspace"}  # filled by the driver when defined


@dataclass
class MemoryReport:
    """What the linked firmware needs: flash = code + constants (+ .data's initial image), RAM = stack + data + bss."""

    flash_bytes: int
    ram_bytes: int
    sections: dict[str, int]
    weights_bytes: int  # the folded weights (part of flash)
    tensor_bytes: int  # input and intermediate buffers (part of RAM)
    arena_bytes: int  # the workspace arena (part of RAM)
    stack_bytes: int  # the reserved stack (part of RAM)
    flash_budget_bytes: int
    ram_budget_bytes: int

    @property
    def fits(self) -> bool:
        """Whether flash and RAM are both within the target's budget."""
        return self.flash_bytes <= self.flash_budget_bytes and self.ram_bytes <= self.ram_budget_bytes

    def to_dict(self) -> dict:
        """The report as JSON-ready data, with ``fits``."""
        return {**asdict(self), "fits": self.fits}


def find_tool(name: str, target: Target) -> str:
    """The path of a toolchain program for ``target``; an error naming the Debian package when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise ExportError(
            f"target {target.name!r}: {name!r} not found on PATH (Debian: apt-get install "
            f"{target.toolchain_package or 'gcc-arm-none-eabi libnewlib-arm-none-eabi'})"
        )
    return path


def run_tool(cmd: list[str], what: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a build tool; on failure an ExportError saying ``what`` failed and why (ld's reason first)."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        lines = [ln for ln in (r.stderr or r.stdout).splitlines() if ln.strip()]
        # ld says why a link failed in lines without "error" (region `FLASH' overflowed by N bytes): those first
        why = [ln for ln in lines if "overflowed by" in ln or "will not fit in region" in ln]
        errors = why + [ln for ln in lines if "error" in ln.lower() and ln not in why] or lines[-5:]
        raise ExportError(f"{what} failed: {' | '.join(errors[:6])}")
    return r


def lower_for_mcu(model: onnx.ModelProto, spec: ControllerSpec, target: Target, fast_math: bool):
    """The lowered IRModule the firmware runs: fused, weights folded, kernels scheduled for a scalar FPU.

    Returns (module, schedule report). ``fast_math`` swaps exp/tanh for TVM's polynomial versions
    (newlib's expf costs far more instructions; exp's floor without a call to floorf, :mod:`export.fast_math`);
    the result is checked against onnxruntime anyway.
    """
    mod = import_onnx(model, spec)
    if fast_math:
        mod = fast_math_transform(mod)
    mod, _ = lower(mod, target, "fused")  # the "zero" pipeline: legalize, fold constants, fuse
    return schedule_module_scalar(mod)


# The generated C passes each kernel the tensors of the plan it was generated from (shapes, dtypes, the
# arena's addresses): the argument checks TVM puts in every kernel's entry (tens of asserts, ~3 KB each)
# check nothing the export has not already fixed, on every call.
KERNEL_PASS_CONFIG = {"tirx.disable_assert": True}


def compile_kernels(mod, tvm_target: dict, path: Path, where: str) -> None:
    """Compile only the TIR kernels of ``mod`` for ``tvm_target`` into the object file ``path``."""
    prims = tvm.IRModule({gv: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)})
    try:
        with contextlib.redirect_stdout(io.StringIO()), tvm.transform.PassContext(config=KERNEL_PASS_CONFIG):
            lib = tvm.compile(prims, target=tvm.target.Target(dict(tvm_target)))
        lib.mod.write_to_file(str(path))
    except Exception as e:  # TVM raises assorted error types; keep the first line and name the target
        raise ExportError(
            f"{where}: TVM failed to compile the kernels for {tvm_target}: {str(e).strip().splitlines()[0]}"
        ) from e


def _fpu(target: Target) -> str:
    cpu = str(target.tvm.get("mcpu", ""))
    if cpu not in FPU_OF_CPU:
        raise ExportError(
            f"target {target.name!r}: no firmware build for mcpu {cpu!r} (known: {', '.join(FPU_OF_CPU)})"
        )
    return FPU_OF_CPU[cpu]


def defined_symbols(obj: Path, target: Target) -> set[str]:
    """Global symbols an object file defines (``arm-none-eabi-nm``)."""
    nm = find_tool(target.cc.replace("gcc", "nm"), target)
    r = run_tool([nm, "--defined-only", "-g", str(obj)], f"listing the symbols of {obj.name}")
    return {parts[-1] for parts in (ln.split() for ln in r.stdout.splitlines()) if len(parts) == 3}


def build_firmware(target: Target, model_c: Path, kernels_o: Path, out_dir: Path, obs_dim: int = 0) -> Path:
    """Link the firmware image for ``target`` from the generated C and the kernels object; returns the ELF.

    ``obs_dim`` sizes the buffer a multi-part request is reassembled in (PROTOCOL.md), at least one frame's floats.
    """
    cc = find_tool(target.cc, target)
    run_tool(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(FIRMWARE_SOURCES),
            "firmware",
            f"OUT={out_dir}",
            f"MODEL_C={model_c}",
            f"KERNELS_O={kernels_o}",
            f"MCPU={target.tvm['mcpu']}",
            f"FPU={_fpu(target)}",
            f"STACK_BYTES={STACK_BYTES}",
            f"REQUEST_FLOATS={max(obs_dim, frames.MAX_FLOATS)}",
            f"FFI_INC={ffi_include_dir()}",
            f"ARM_CC={cc}",
        ],
        f"target {target.name!r}: linking the firmware with {target.cc}",
    )
    return out_dir / "firmware.elf"


def section_sizes(elf: Path, target: Target) -> dict[str, int]:
    """Allocated section sizes of a linked image (``arm-none-eabi-size -A``)."""
    size = find_tool(target.cc.replace("gcc", "size"), target)
    r = run_tool([size, "-A", str(elf)], f"reading the sections of {elf.name}")
    out: dict[str, int] = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def measure_memory(elf: Path, target: Target, weights_bytes: int, tensor_bytes: int, arena: int) -> MemoryReport:
    """Flash and RAM of the linked firmware, with the target's budget."""
    sections = section_sizes(elf, target)
    flash = sum(sections.get(s, 0) for s in FLASH_SECTIONS)
    ram = sum(sections.get(s, 0) for s in RAM_SECTIONS)
    return MemoryReport(
        flash,
        ram,
        {k: v for k, v in sections.items() if k in FLASH_SECTIONS + RAM_SECTIONS},
        weights_bytes,
        tensor_bytes,
        arena,
        sections.get(".stack", STACK_BYTES),
        target.flash_kb * 1024,
        target.ram_kb * 1024,
    )


class DoesNotFit(ExportError):
    """The linked firmware exceeds the target's flash or RAM; ``memory`` carries the sizes (the bench reports them)."""

    def __init__(self, message: str, target: str, memory: MemoryReport) -> None:
        super().__init__(message)
        self.target, self.memory = target, memory


def check_fits(target: Target, mem: MemoryReport, where: str) -> None:
    """Raise :class:`DoesNotFit` (an ExportError) naming the sizes when the firmware does not fit the target's flash or RAM."""
    problems = []
    if mem.flash_bytes > mem.flash_budget_bytes:
        problems.append(
            f"flash {mem.flash_bytes} bytes ({mem.flash_bytes / 1024:.1f} KB, of which weights "
            f"{mem.weights_bytes / 1024:.1f} KB) > {target.flash_kb} KB"
        )
    if mem.ram_bytes > mem.ram_budget_bytes:
        problems.append(
            f"RAM {mem.ram_bytes} bytes ({mem.ram_bytes / 1024:.1f} KB: stack {mem.stack_bytes}, "
            f"arena {mem.arena_bytes}, tensors {mem.tensor_bytes}) > {target.ram_kb} KB"
        )
    if problems:
        raise DoesNotFit(
            f"{where}: the firmware does not fit: {'; '.join(problems)} "
            "(prune the controller further, or pick a target with more memory)",
            target.name,
            mem,
        )


def build_host_check(model_c: Path, host_kernels_o: Path | None, out_dir: Path, what: str = "the generated C") -> Path:
    """The generated C + the kernels compiled for this host (None: C without kernels) + ``host_check.c``."""
    cc = shutil.which("gcc")
    if cc is None:
        raise ExportError("gcc not found on PATH: the generated C is checked on the host first (apt-get install gcc)")
    run_tool(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(FIRMWARE_SOURCES),
            "host",
            f"OUT={out_dir}",
            f"MODEL_C={model_c}",
            f"KERNELS_O={host_kernels_o or ''}",
            f"FFI_INC={ffi_include_dir()}",
            f"HOST_CC={cc}",
        ],
        f"building the host check of {what}",
    )
    return out_dir / "host_check"


def run_host_check(exe: Path, obs: np.ndarray, act_dim: int) -> tuple[np.ndarray, int]:
    """Actions of the host build for each observation row, and the arena bytes it used at most."""
    data = np.ascontiguousarray(obs, dtype="<f4").tobytes()
    r = subprocess.run([str(exe)], input=data, capture_output=True, timeout=120)
    err = r.stderr.decode(errors="replace").strip()
    if r.returncode != 0:
        raise ExportError(
            f"the generated C failed on the host: {err.splitlines()[-1] if err else f'exit {r.returncode}'}"
        )
    peak = int(err.split()[-1]) if err.startswith("arena_peak_bytes") else -1
    return np.frombuffer(r.stdout, dtype="<f4").reshape(-1, act_dim), peak


@dataclass
class McuArtifact:
    """What :func:`build_mcu_artifact` wrote into the bundle folder, and its manifest record."""

    record: dict
    host_check: Path  # the host build of the generated C (kept in a temp folder for verification)


def build_mcu_artifact(
    model: onnx.ModelProto, spec: ControllerSpec, target: Target, folder: Path, work: Path, fast_math: bool = True
) -> McuArtifact:
    """Write ``<t>.elf``, ``<t>_model.c``, ``<t>_kernels.o`` (and the model header) into ``folder``.

    ``work`` is a scratch folder for build products that do not ship (the host kernels and check
    program). Raises ExportError if the graph is not a kernel chain or the image does not fit.
    """
    start = time.perf_counter()
    where = f"target {target.name!r}"
    find_tool(target.cc, target)
    mod, schedule = lower_for_mcu(model, spec, target, fast_math)
    chain = kernel_chain(mod, where, int8=True)
    scratch = arena_bytes(mod)
    arena = max(scratch.values(), default=0)
    weights = chain.nbytes(CONSTANT)  # 4 bytes a float, 1 an int8 code
    tensors = 4 * (chain.tensors[chain.input].numel + chain.floats("intermediate"))
    # the bundle's ONNX graph is the source of truth: the header names its digest
    onnx_sha = hashlib.sha256(model.SerializeToString()).hexdigest()
    header = (
        f"{target.name}_model.c - generated by prune-and-export; do not edit.\n"
        f"The controller of model.onnx (sha256 {onnx_sha[:16]}...) as plain C for {target.name} "
        f"({target.tvm.get('mcpu')}).\n"
        f"Build with {MODEL_HEADER}, the kernels object {target.name}_kernels.o and the tvm_ffi headers "
        "(c_api.h, dlpack.h)."
    )
    kernels_o = folder / f"{target.name}_kernels.o"
    tvm_target = dict(target.tvm)
    compile_kernels(mod, tvm_target, kernels_o, where)
    symbols = defined_symbols(kernels_o, target)
    slots = WORKSPACE_SLOTS <= symbols
    if not slots and WORKSPACE_SLOTS & symbols:
        raise ExportError(f"{where}: the kernels object defines only {sorted(WORKSPACE_SLOTS & symbols)}")
    model_c = folder / f"{target.name}_model.c"
    model_c.write_text(generate_c(chain, arena, header, slots))
    shutil.copy2(FIRMWARE_SOURCES / MODEL_HEADER, folder / MODEL_HEADER)
    work.mkdir(parents=True, exist_ok=True)
    build_dir = work / f"{target.name}-firmware"
    shutil.rmtree(build_dir, ignore_errors=True)  # a rebuild (exact-math fallback) starts clean
    shutil.rmtree(work / f"{target.name}-host", ignore_errors=True)
    elf = build_firmware(target, model_c, kernels_o, build_dir, spec.obs_dim)
    mem = measure_memory(elf, target, weights, tensors, arena)
    check_fits(target, mem, where)
    image = folder / f"{target.name}.elf"
    shutil.copy2(elf, image)
    host_o = work / f"{target.name}_kernels_host.o"
    compile_kernels(mod, HOST_TVM, host_o, f"{where} (host check)")
    host_exe = build_host_check(model_c, host_o, work / f"{target.name}-host")
    kernels = sorted({name for name, _ in chain.calls})
    record = {
        **file_record(image),
        "arch": target.arch,
        "kind": "mcu",
        "tvm_target": tvm_target,
        "target": target.to_dict(),
        "entry": "pae_mcu_infer",
        "input_shape": [1, spec.obs_dim],
        "kernels": len(kernels),
        "kernel_calls": len(chain.calls),
        "kernel_names": kernels,
        "compile_seconds": round(time.perf_counter() - start, 3),
        "compile_flags": {
            "pipeline": "mcu-scalar",
            "relax_pipeline": "zero",
            "fast_math": bool(fast_math),
            "schedule": {
                "rule": "matvec: groups of outputs accumulated in registers, reduction "
                "inside, elementwise epilogue from the registers (export/mcu/schedule.py)",
                **schedule.to_dict(),
            },
            "cc": target.cc,
            "batch": 1,
            "stack_bytes": STACK_BYTES,
        },
        "sources": {
            "model_c": file_record(model_c),
            "kernels_o": file_record(kernels_o),
            "header": file_record(folder / MODEL_HEADER),
        },
        "qemu_machine": target.qemu_machine,
        "flash_bytes": mem.flash_bytes,
        "ram_bytes": mem.ram_bytes,
        "memory": mem.to_dict(),
        "arena_per_kernel": scratch,
        "cycles_per_inference": None,
        "cycles_note": "qemu-system-arm models no timing and reads the DWT cycle counter as 0: no cycle count "
        "here (see instructions_per_inference; on a board, time it with the DWT counter)",
    }
    return McuArtifact(record, host_exe)


def _record(tolerance: float | np.ndarray) -> float | list[float]:
    values = [float(v) for v in np.atleast_1d(np.asarray(tolerance, np.float64))]
    return values[0] if len(set(values)) == 1 else values


def _err(c: Comparison) -> float:
    return c.max_abs_err if np.isfinite(c.max_abs_err) else float("inf")


def _differs(what: str, c: Comparison) -> str:
    if c.action < 0:
        return f"{what} gives outputs of another shape than onnxruntime's"
    return (
        f"{what} differs from onnxruntime by {c.max_abs_err:.3g} on action {c.action} at observation {c.row} "
        f"(> {c.threshold:g})"
    )


def verify_mcu(
    bundle_dir: Path,
    target: Target,
    artifact: McuArtifact,
    obs: np.ndarray,
    reference: np.ndarray,
    tolerance: float | np.ndarray,
):
    """Run the generated C on the host and the firmware under qemu; both must match onnxruntime within ``tolerance``.

    ``tolerance``: the allowed absolute error, one number or one per action dimension (export/parity.py).
    Also fails (status "failed") if the host run used more arena than computed at export, or the
    firmware's stack use came within ``1 - STACK_LIMIT`` of its reservation.
    """
    rec = artifact.record
    tol = _record(tolerance)
    host_actions, peak = run_host_check(artifact.host_check, obs, reference.shape[1])
    host = compare(host_actions, reference, tolerance)
    host_err = _err(host)
    method = "generated C on the host (x86_64 kernels)"
    if not host.ok:
        return Verification(
            target.name,
            FAILED,
            method,
            len(obs),
            host_err,
            tol,
            _differs("the generated C on the host", host),
            host.action,
            host.row,
        )
    if peak > rec["memory"]["arena_bytes"]:
        return Verification(
            target.name,
            FAILED,
            method,
            len(obs),
            host_err,
            tol,
            f"the kernels used {peak} arena bytes, more than the {rec['memory']['arena_bytes']} computed",
        )
    rec["host_check"] = {"max_abs_err": host_err, "n": len(obs), "arena_peak_bytes": peak}
    why_not = qemu_available(target)
    if why_not:
        return Verification(
            target.name,
            NOT_VERIFIED,
            method,
            len(obs),
            host_err,
            tol,
            f"the generated C matches onnxruntime on the host, but the firmware did not run: {why_not}",
        )
    method = f"generated C on the host + firmware under qemu-system-arm -machine {target.qemu_machine}"
    with FirmwareSession(Path(bundle_dir), target.name) as session:
        fw_actions, instructions = session.infer_batch(obs)
        stats = session.stats_extended()
    fw = compare(fw_actions, reference, tolerance)
    fw_err = _err(fw)
    rec["firmware_check"] = {
        "max_abs_err": fw_err,
        "n": len(obs),
        "arena_peak_bytes": stats["arena_peak_bytes"],
        "stack_peak_bytes": stats["stack_peak_bytes"],
        "runner": session.where,
    }
    rec["instructions_per_inference"] = {
        "min": int(instructions.min()),
        "mean": float(instructions.mean()),
        "max": int(instructions.max()),
        "resolution": INSTRUCTION_RESOLUTION,
        "how": INSTRUCTIONS_HOW,
    }
    err = max(host_err, fw_err)
    if not fw.ok:
        return Verification(
            target.name, FAILED, method, len(obs), err, tol, _differs("the firmware", fw), fw.action, fw.row
        )
    if stats["stack_peak_bytes"] > STACK_LIMIT * STACK_BYTES:
        return Verification(
            target.name,
            FAILED,
            method,
            len(obs),
            err,
            tol,
            f"the firmware used {stats['stack_peak_bytes']} of its {STACK_BYTES} stack bytes",
        )
    return Verification(target.name, VERIFIED, method, len(obs), err, tol, "", fw.action, fw.row)


def memory_table(records: dict[str, dict]) -> list[dict]:
    """One row per microcontroller artifact: flash/RAM used and budget (for reports)."""
    rows = []
    for name, rec in records.items():
        if rec.get("kind") != "mcu":
            continue
        m = rec["memory"]
        rows.append(
            {
                "target": name,
                "flash_bytes": m["flash_bytes"],
                "flash_budget_bytes": m["flash_budget_bytes"],
                "ram_bytes": m["ram_bytes"],
                "ram_budget_bytes": m["ram_budget_bytes"],
                "weights_bytes": m["weights_bytes"],
                "arena_bytes": m["arena_bytes"],
                "stack_bytes": m["stack_bytes"],
                "fits": m["fits"],
            }
        )
    return rows
