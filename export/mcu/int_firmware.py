"""Firmware for a microcontroller without an FPU: the full-integer controller (:mod:`export.mcu.int_model`) as plain
C (:mod:`export.mcu.int_codegen`), linked soft-float ABI with the same frame server as the other boards.

A target is integer-only when it is a microcontroller built with ``mfloat-abi: soft`` (``cortex-m3``):
:func:`integer_only`. The bundle gets ``<t>.elf``, ``<t>_model.c``, ``pae_mcu_model.h`` and
``<t>_int_model.json`` (every integer of the model: what the host twin, :meth:`IntModel.act`, evaluates).

Verification is exact, not within a tolerance: the generated C on the host and the firmware under
qemu must give the host twin's actions bit for bit. The gap between the integer model and the float
model (onnxruntime) is recorded (``integer.max_abs_err_vs_onnx``), not gated: it is what quantizing
the activations costs, judged in closed loop (the return), not per action.
The inference object is checked to call no soft-float routine (``arm-none-eabi-nm -u``).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from torch import nn

from export.errors import ExportError
from export.mcu.firmware import (
    FIRMWARE_SOURCES,
    INSTRUCTION_RESOLUTION,
    INSTRUCTIONS_HOW,
    MODEL_HEADER,
    STACK_BYTES,
    McuArtifact,
    check_fits,
    measure_memory,
    run_host_check,
)
from export.mcu.int_codegen import generate_int_c
from export.mcu.int_model import IntModel, build_int_model
from export.mcu.session import FirmwareSession, qemu_available
from export.runtime import ffi_include_dir
from export.spec import ControllerSpec
from export.verification import FAILED, NOT_VERIFIED, VERIFIED, Verification
from targets import Target

SOFT_FLOAT_PREFIXES = ("__aeabi_f", "__aeabi_d", "__aeabi_i2f", "__aeabi_ui2f", "__aeabi_l2f", "__aeabi_ul2f")
SOFT_FLOAT_NAMES = ("sf", "df")  # libgcc's __addsf3, __floatsisf, __muldf3, ... end so


def integer_only(target: Target) -> bool:
    """A microcontroller target without an FPU (soft-float ABI): its firmware runs the full-integer model."""
    return target.kind == "mcu" and target.tvm.get("mfloat-abi") == "soft"


def int_model_file(target_name: str) -> str:
    """The bundle file holding the integer model of ``target_name``'s firmware."""
    return f"{target_name}_int_model.json"


def load_int_model(bundle_dir: Path, target_name: str) -> IntModel:
    """The host twin of a bundle's integer firmware for ``target_name`` (its ``<t>_int_model.json``)."""
    path = Path(bundle_dir) / int_model_file(target_name)
    if not path.is_file():
        raise ExportError(f"{path}: no integer model for target {target_name!r} in this bundle")
    return IntModel.load(path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _file(path: Path) -> dict:
    return {"file": path.name, "sha256": _sha(path), "bytes": path.stat().st_size}


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise ExportError(f"{what} failed: {' | '.join(tail)}")
    return r


def is_soft_float(symbol: str) -> bool:
    """Whether ``symbol`` is a soft-float routine of the ARM EABI or libgcc."""
    return symbol.startswith(SOFT_FLOAT_PREFIXES) or (
        symbol.startswith("__") and symbol.rstrip("0123456789").endswith(SOFT_FLOAT_NAMES)
    )


def _symbols(target: Target, path: Path, undefined: bool) -> list[str]:
    nm = shutil.which(target.cc.replace("gcc", "nm"))
    if nm is None:
        raise ExportError(
            f"target {target.name!r}: {target.cc.replace('gcc', 'nm')} not found (binutils-arm-none-eabi)"
        )
    r = _run([nm, "-u" if undefined else "--defined-only", str(path)], f"listing the symbols of {path.name}")
    return sorted({ln.split()[-1] for ln in r.stdout.splitlines() if ln.strip()})


def _build_host_check(model_c: Path, out_dir: Path) -> Path:
    """The generated C with ``host_check.c`` for this host (observations in, actions out); no kernels object."""
    cc = shutil.which("gcc")
    if cc is None:
        raise ExportError("gcc not found on PATH: the generated C is checked on the host first (apt-get install gcc)")
    _run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(FIRMWARE_SOURCES),
            "host",
            f"OUT={out_dir}",
            f"MODEL_C={model_c}",
            "KERNELS_O=",
            f"FFI_INC={ffi_include_dir()}",
            f"HOST_CC={cc}",
        ],
        "building the host check of the generated integer C",
    )
    return out_dir / "host_check"


def _arm_flags(target: Target) -> str:
    return f"-mcpu={target.tvm.get('mcpu', 'cortex-m3')} -mthumb -mfloat-abi=soft"


def build_int_artifact(
    module: nn.Module, spec: ControllerSpec, target: Target, folder: Path, work: Path, calibration: np.ndarray | None
) -> McuArtifact:
    """Calibrate the integer model on ``calibration`` (states the controller visits), write its C, link the firmware."""
    start = time.perf_counter()
    where = f"target {target.name!r}"
    if calibration is None or len(calibration) == 0:
        raise ExportError(
            f"{where} runs a full-integer model whose activation scales are calibrated on states the controller "
            "visits: export with closed-loop parity episodes (prune-and-export export --parity-episodes N)"
        )
    cc = shutil.which(target.cc)
    if cc is None:
        raise ExportError(f"{where}: {target.cc} not found (apt-get install {target.toolchain_package})")
    model = build_int_model(module, calibration)
    if (model.obs_dim, model.act_dim) != (spec.obs_dim, spec.act_dim):
        raise ExportError(
            f"{where}: the integer model maps {model.obs_dim} -> {model.act_dim}, the spec says otherwise"
        )
    model_json = folder / int_model_file(target.name)
    model.save(model_json)
    header = (
        f"{target.name}_model.c - generated by prune-and-export; do not edit.\n"
        f"The controller as full-integer C for {target.name} ({target.tvm.get('mcpu')}, no FPU): int8 weights and "
        "activations, int32 accumulation, activations by lookup table.\n"
        f"Its host twin: {model_json.name}. Build with {MODEL_HEADER}; no kernels object, no libm."
    )
    model_c = folder / f"{target.name}_model.c"
    model_c.write_text(generate_int_c(model, header))
    shutil.copy2(FIRMWARE_SOURCES / MODEL_HEADER, folder / MODEL_HEADER)
    work.mkdir(parents=True, exist_ok=True)
    build_dir = work / f"{target.name}-firmware"
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    obj = build_dir / "model.o"
    _run(
        [
            cc,
            *_arm_flags(target).split(),
            "-Os",
            "-std=c11",
            "-ffunction-sections",
            "-I",
            str(FIRMWARE_SOURCES),
            "-c",
            str(model_c),
            "-o",
            str(obj),
        ],
        f"{where}: compiling the integer model with {target.cc}",
    )
    inference_calls = _symbols(target, obj, undefined=True)
    soft = [s for s in inference_calls if is_soft_float(s)]
    if soft:
        raise ExportError(f"{where}: the integer inference calls soft-float routines {', '.join(soft)}")
    _run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(FIRMWARE_SOURCES),
            "firmware",
            f"OUT={build_dir}",
            f"MODEL_C={model_c}",
            "KERNELS_O=",
            f"ARM_FLAGS={_arm_flags(target)}",
            f"STACK_BYTES={STACK_BYTES}",
            f"FFI_INC={ffi_include_dir()}",
            f"ARM_CC={cc}",
        ],
        f"{where}: linking the firmware with {target.cc}",
    )
    elf = build_dir / "firmware.elf"
    widest = max([model.obs_dim] + [layer.weight.shape[0] for layer in model.layers])
    mem = measure_memory(elf, target, model.weight_bytes(), 2 * widest + 2 * widest, 0)
    check_fits(target, mem, where)
    image = folder / f"{target.name}.elf"
    shutil.copy2(elf, image)
    firmware_soft = [s for s in _symbols(target, elf, undefined=False) if is_soft_float(s)]
    host_exe = _build_host_check(model_c, work / f"{target.name}-host")
    record = {
        **_file(image),
        "arch": target.arch,
        "kind": "mcu",
        "tvm_target": dict(target.tvm),
        "target": target.to_dict(),
        "entry": "pae_mcu_infer",
        "input_shape": [1, spec.obs_dim],
        "kernels": 0,  # no TVM kernels: the generated C is the whole model
        "kernel_calls": 0,
        "kernel_names": [],
        "compile_seconds": round(time.perf_counter() - start, 3),
        "compile_flags": {
            "pipeline": "mcu-integer",
            "cc": target.cc,
            "arm_flags": _arm_flags(target),
            "batch": 1,
            "stack_bytes": STACK_BYTES,
        },
        "sources": {
            "model_c": _file(model_c),
            "header": _file(folder / MODEL_HEADER),
            "int_model": _file(model_json),
        },
        "integer": {
            "weights": "int8, per output channel (the previous activation's scale folded in)",
            "activations": "int8, one scale per layer (per input feature for the observation), calibrated on the given states",
            "accumulation": "int32",
            "activation_functions": f"lookup tables of {2 * model.lut_half + 1} entries over the pre-activation grid",
            "output": f"int32 fixed point 2^-{model.out_q}, assembled into float32 bits by integer operations",
            "calibration_states": int(len(calibration)),
            "layer_steps": [layer.step for layer in model.layers],
            "activation_scales": [layer.scale for layer in model.layers[:-1]],
            "clip_percentile": model.clip_percentile,
            "inference_undefined_symbols": inference_calls,
            "inference_soft_float": soft,
            "firmware_soft_float": firmware_soft,
            "firmware_soft_float_note": "used by the frame server only (its finite check of observations and actions, "
            "counters sent as float32), never by pae_mcu_infer",
        },
        "qemu_machine": target.qemu_machine,
        "flash_bytes": mem.flash_bytes,
        "ram_bytes": mem.ram_bytes,
        "memory": mem.to_dict(),
        "cycles_per_inference": None,
        "cycles_note": "qemu-system-arm models no timing: no cycle count here (see instructions_per_inference)",
    }
    return McuArtifact(record, host_exe)


def verify_int(
    bundle_dir: Path, target: Target, artifact: McuArtifact, obs: np.ndarray, reference: np.ndarray
) -> Verification:
    """The generated C on the host and the firmware under qemu against the host twin: equal bit for bit."""
    rec = artifact.record
    twin = IntModel.load(Path(bundle_dir) / rec["sources"]["int_model"]["file"]).act(obs)
    rec["integer"]["max_abs_err_vs_onnx"] = float(np.abs(twin - reference).max()) if len(obs) else 0.0
    host, _ = run_host_check(artifact.host_check, obs, reference.shape[1])
    method = "generated integer C on the host = host twin"
    if host.shape != twin.shape or not np.array_equal(host.view(np.uint32), twin.view(np.uint32)):
        err = float(np.abs(host - twin).max()) if host.shape == twin.shape else float("inf")
        return Verification(
            target.name, FAILED, method, len(obs), err, 0.0, f"the generated C differs from the host twin by {err:.3g}"
        )
    why_not = qemu_available(target)
    if why_not:
        return Verification(
            target.name, NOT_VERIFIED, method, len(obs), 0.0, 0.0, f"the firmware did not run: {why_not}"
        )
    method = f"generated C on the host + firmware under qemu-system-arm -machine {target.qemu_machine} = host twin (bit for bit)"
    with FirmwareSession(Path(bundle_dir), target.name) as session:
        fw, instructions = session.infer_batch(obs)
        stats = session.stats_extended()
    fw = np.asarray(fw, np.float32).reshape(twin.shape)
    rec["firmware_check"] = {"n": len(obs), "stack_peak_bytes": stats["stack_peak_bytes"], "runner": session.where}
    rec["instructions_per_inference"] = {
        "min": int(instructions.min()),
        "mean": float(instructions.mean()),
        "max": int(instructions.max()),
        "resolution": INSTRUCTION_RESOLUTION,
        "how": INSTRUCTIONS_HOW,
    }
    if not np.array_equal(fw.view(np.uint32), twin.view(np.uint32)):
        diff = np.abs(fw - twin)
        row, action = np.unravel_index(int(np.argmax(diff)), diff.shape)
        return Verification(
            target.name,
            FAILED,
            method,
            len(obs),
            float(diff.max()),
            0.0,
            f"the firmware differs from the host twin by {float(diff.max()):.3g}",
            int(action),
            int(row),
        )
    return Verification(target.name, VERIFIED, method, len(obs), 0.0, 0.0)
