"""The named targets: one :class:`Target` each, built in below or read from a TOML file.

A target is a TVM target dict (what code to generate), a toolchain (how to link it), and how to run a
program for it (natively, under qemu-user with a sysroot, or on a board over ssh). See README.md.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from targets.errors import TargetError
from targets.host import host_arch, host_cpu, host_cpu_flags

# Sensible per-architecture defaults, so a user's entry only says what differs (usually the CPU).
ARCH_DEFAULTS: dict[str, dict] = {
    "x86_64": {"cc": "gcc", "cxx": "g++", "toolchain_package": "gcc g++", "qemu": "qemu-x86_64", "sysroot": "/"},
    "aarch64": {
        "cc": "aarch64-linux-gnu-gcc",
        "cxx": "aarch64-linux-gnu-g++",
        "toolchain_package": "gcc-aarch64-linux-gnu g++-aarch64-linux-gnu",
        "qemu": "qemu-aarch64",
        "sysroot": "/usr/aarch64-linux-gnu",
    },
    "armv7": {
        "cc": "arm-linux-gnueabihf-gcc",
        "cxx": "arm-linux-gnueabihf-g++",
        "toolchain_package": "gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf",
        "qemu": "qemu-arm",
        "sysroot": "/usr/arm-linux-gnueabihf",
    },
    "cortex-m": {
        "cc": "arm-none-eabi-gcc",
        "cxx": "arm-none-eabi-g++",
        "toolchain_package": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
        "qemu": "qemu-system-arm",
        "sysroot": "",
    },
}
KINDS = ("linux", "mcu")  # linux: a shared library + the firmware stub; mcu: bare-metal firmware (no OS)
USER_DIR_ENV = "PRUNE_EXPORT_TARGETS"  # colon-separated folders of *.toml target files


@dataclass(frozen=True)
class Target:
    """One deployment target. Only ``name``, ``arch`` and ``tvm`` are required; the rest defaults per arch."""

    name: str
    arch: str  # x86_64 | aarch64 | armv7 | cortex-m
    tvm: dict  # the TVM target dict, e.g. {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72"}
    description: str = ""
    kind: str = "linux"
    vector_bits: int = 128  # SIMD width the kernel schedule splits for (128 = SSE/NEON, 256 = AVX2)
    cc: str = ""  # C compiler that links the TVM library (export_library) and builds the stub
    cxx: str = ""
    toolchain_package: str = ""  # Debian packages providing cc/cxx, named in the "not found" error
    qemu: str = ""  # qemu-user binary that runs programs for this target on another host
    qemu_cpu: str = ""  # qemu -cpu model (defaults to tvm["mcpu"] when qemu knows it)
    qemu_machine: str = ""  # mcu only: qemu-system-arm -machine board model
    sysroot: str = ""  # qemu -L: where the target's dynamic loader and libc live on this host
    runner: str = "auto"  # auto | native | qemu | ssh://user@host[:port]
    host_flags: tuple[str, ...] = ()  # /proc/cpuinfo flags a host needs to run this code natively
    flash_kb: int = 0  # mcu only: memory budget the firmware must fit
    ram_kb: int = 0
    source: str = "builtin"

    def __post_init__(self) -> None:
        where = f"target {self.name!r} ({self.source})"
        if not self.name or any(c.isspace() or c in ",/" for c in self.name):
            raise TargetError(f"{where}: name must be non-empty without spaces, commas or slashes")
        if self.arch not in ARCH_DEFAULTS:
            raise TargetError(f"{where}: arch {self.arch!r} is not one of {', '.join(ARCH_DEFAULTS)}")
        if self.kind not in KINDS:
            raise TargetError(f"{where}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(self.tvm, dict) or self.tvm.get("kind") != "llvm":
            raise TargetError(f"{where}: tvm must be a TVM target dict with kind 'llvm', got {self.tvm!r}")
        if self.vector_bits not in (32, 64, 128, 256, 512):
            raise TargetError(f"{where}: vector_bits {self.vector_bits} is not 32, 64, 128, 256 or 512")

    @property
    def vector_lanes(self) -> int:
        """float32 lanes of one SIMD register."""
        return max(1, self.vector_bits // 32)

    @property
    def runs_on_host(self) -> bool:
        """Whether this machine can execute the target's code directly (same arch, needed CPU flags)."""
        return self.arch == host_arch() and set(self.host_flags) <= host_cpu_flags()

    def tvm_target(self):
        """The ``tvm.target.Target`` (imports TVM)."""
        import tvm  # deferred: TVM is heavy and only this method needs it

        try:
            return tvm.target.Target(dict(self.tvm))
        except Exception as e:  # TVM raises its own error types; name the target instead
            raise TargetError(f"target {self.name!r}: TVM rejects the target dict {self.tvm}: {e}") from e

    def require_compiler(self) -> str:
        """Absolute path of the C compiler, or a TargetError naming what to install."""
        path = shutil.which(self.cc)
        if path is None:
            hint = f" (Debian: apt-get install {self.toolchain_package})" if self.toolchain_package else ""
            raise TargetError(f"target {self.name!r}: cross compiler {self.cc!r} not found on PATH{hint}")
        return path

    def to_dict(self) -> dict:
        d = asdict(self)
        d["host_flags"] = list(self.host_flags)
        return d


def _with_arch_defaults(entry: dict) -> dict:
    """Fill toolchain/qemu fields the entry leaves out from the arch defaults."""
    out = dict(entry)
    for key, value in ARCH_DEFAULTS.get(out.get("arch", ""), {}).items():
        if not out.get(key):
            out[key] = value
    if not out.get("qemu_cpu") and out.get("arch") not in ("x86_64", "cortex-m"):
        out["qemu_cpu"] = out.get("tvm", {}).get("mcpu", "")
    return out


def make_target(**entry) -> Target:
    """A Target from keyword fields, with per-arch defaults filled in (the one-dataclass way to add one)."""
    if "host_flags" in entry:
        entry["host_flags"] = tuple(entry["host_flags"])
    return Target(**_with_arch_defaults(entry))


def _aarch64(name: str, mcpu: str | None, description: str) -> Target:
    tvm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]}
    if mcpu:
        tvm["mcpu"] = mcpu
    return make_target(
        name=name, arch="aarch64", tvm=tvm, description=description, vector_bits=128, qemu_cpu=mcpu or "cortex-a72"
    )


# LLVM marks the M4's fused multiply-add "slow" (3 cycles against 1 + 1 for vmul and vadd) and never
# contracts there; -slowfpvfmx lifts that: one vfma.f32 per multiply-add, half the FPU instructions of a
# dot product (a register-starved loop also spills less), and one rounding instead of two.
CORTEX_M4_TVM = {
    "kind": "llvm",
    "mtriple": "thumbv7em-none-eabihf",
    "mcpu": "cortex-m4",
    "mfloat-abi": "hard",
    "mattr": ["-slowfpvfmx"],
}

BUILTIN: tuple[Target, ...] = (
    make_target(
        name="x86_64-sse2",
        arch="x86_64",
        tvm={"kind": "llvm", "mtriple": "x86_64-linux-gnu"},
        description="any x86-64 CPU (SSE2 baseline: 4 lanes, no FMA; for a machine you know nothing of)",
        vector_bits=128,
    ),
    make_target(
        name="x86_64-avx2",
        arch="x86_64",
        tvm={"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"},
        description="x86-64 with AVX2 and FMA (Intel Haswell+, AMD Zen+)",
        vector_bits=256,
        host_flags=("avx2", "fma"),
    ),
    _aarch64("aarch64", None, "any 64-bit ARMv8-A Linux board (NEON)"),
    _aarch64("cortex-a53", "cortex-a53", "Raspberry Pi 3, Pi Zero 2 W (Cortex-A53)"),
    _aarch64("cortex-a72", "cortex-a72", "Raspberry Pi 4 (Cortex-A72)"),
    _aarch64("cortex-a76", "cortex-a76", "Raspberry Pi 5 (Cortex-A76)"),
    make_target(
        name="cortex-a7",
        arch="armv7",
        tvm={
            "kind": "llvm",
            "mtriple": "armv7a-linux-gnueabihf",
            "mcpu": "cortex-a7",
            "mattr": ["+neon", "+vfp4"],
            "mfloat-abi": "hard",
        },
        description="32-bit ARMv7-A hard-float boards (Raspberry Pi 2, BeagleBone-class)",
        vector_bits=128,
    ),
    # Microcontrollers (kind "mcu"): a firmware image with the generated C driver (export/mcu.py), run
    # under qemu-system-arm; flash_kb/ram_kb are the part's budget the linked image is checked against.
    make_target(
        name="cortex-m4",
        arch="cortex-m",
        kind="mcu",
        tvm=CORTEX_M4_TVM,
        description="Cortex-M4F microcontroller, 1 MB flash / 192 KB RAM (STM32F407-class; qemu: mps2-an386)",
        vector_bits=32,
        qemu_machine="mps2-an386",
        flash_kb=1024,
        ram_kb=192,
    ),
    make_target(
        name="cortex-m4-256k",
        arch="cortex-m",
        kind="mcu",
        tvm=CORTEX_M4_TVM,
        description="small Cortex-M4F part, 256 KB flash / 64 KB RAM (STM32F401CC-class; qemu: mps2-an386)",
        vector_bits=32,
        qemu_machine="mps2-an386",
        flash_kb=256,
        ram_kb=64,
    ),
    make_target(
        name="cortex-m7",
        arch="cortex-m",
        kind="mcu",
        tvm={"kind": "llvm", "mtriple": "thumbv7em-none-eabihf", "mcpu": "cortex-m7", "mfloat-abi": "hard"},
        description="Cortex-M7 microcontroller, 2 MB flash / 512 KB RAM (STM32F767-class; qemu: mps2-an500)",
        vector_bits=32,
        qemu_machine="mps2-an500",
        flash_kb=2048,
        ram_kb=512,
    ),
    # No FPU: the firmware runs the full-integer model (export/mcu/int_firmware.py), soft-float ABI.
    make_target(
        name="cortex-m3",
        arch="cortex-m",
        kind="mcu",
        tvm={"kind": "llvm", "mtriple": "thumbv7m-none-eabi", "mcpu": "cortex-m3", "mfloat-abi": "soft"},
        description="Cortex-M3 without FPU, 64 KB flash / 20 KB RAM (STM32F103C8-class), full-integer int8 "
        "inference (qemu: mps2-an385)",
        vector_bits=32,
        qemu_machine="mps2-an385",
        flash_kb=64,
        ram_kb=20,
    ),
)


# /proc/cpuinfo flags of the instruction set extensions LLVM may use for a CPU it is told about: a library built
# for this machine's CPU needs every one of them that this machine has (a missing one is SIGILL, not an error).
X86_ISA_FLAGS = (
    "sse3", "pni", "ssse3", "sse4_1", "sse4_2", "sse4a", "popcnt", "abm", "aes", "pclmulqdq", "movbe",
    "avx", "avx2", "fma", "f16c", "bmi1", "bmi2", "adx", "sha_ni", "gfni", "vaes", "vpclmulqdq", "avx_vnni",
    "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2",
    "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512_bf16", "avx512_fp16",
)  # fmt: skip
_TRIPLES = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu", "armv7": "armv7a-linux-gnueabihf"}


def host_target(name: str, description: str) -> Target:
    """This machine's CPU as a target: LLVM's name for it (``mcpu: native`` is silently ignored by TVM), its SIMD
    width, and on x86-64 the instruction set flags a host needs to run the code (:data:`X86_ISA_FLAGS`)."""
    arch = host_arch()
    if arch not in _TRIPLES:
        raise TargetError(f"target {name!r}: host architecture {arch!r} is not supported")
    flags = host_cpu_flags()
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    needed = tuple(f for f in X86_ISA_FLAGS if f in flags) if arch == "x86_64" else ()
    return make_target(
        name=name,
        arch=arch,
        tvm={"kind": "llvm", "mtriple": _TRIPLES[arch], "mcpu": host_cpu()},
        description=description.format(cpu=host_cpu()),
        vector_bits=bits,
        runner="native",
        cc="gcc",
        cxx="g++",
        toolchain_package="gcc g++",
        host_flags=needed,
        source="detected",
    )


def native_target() -> Target:
    """This machine, with the CPU detected through LLVM (see :func:`host_target`)."""
    return host_target("native", "this machine ({cpu})")


def x86_64_target() -> Target:
    """The default ``x86_64`` target: on an x86-64 host, its own CPU (AVX2/AVX-512 and FMA where it has them), never
    silently the SSE2 baseline; elsewhere (cross-compiling with no x86 CPU to ask) the baseline, saying so.

    Its bundle records the CPU and the flags it needs; the stub refuses it on a CPU without them. For another
    machine, name its CPU: ``x86_64-avx2``, ``x86_64-sse2`` or a TOML entry with ``mcpu`` (targets/README.md).
    """
    if host_arch() == "x86_64":
        return replace(
            host_target(
                "x86_64",
                "x86-64, this machine's CPU ({cpu}); for another machine use x86_64-avx2, "
                "x86_64-sse2 or a TOML entry with its mcpu",
            ),
            runner="auto",
            source="builtin",
        )
    return make_target(
        name="x86_64",
        arch="x86_64",
        tvm={"kind": "llvm", "mtriple": "x86_64-linux-gnu"},
        description="x86-64 built on a non-x86 host: SSE2 baseline (no CPU to detect; name one with x86_64-avx2 "
        "or a TOML entry)",
        vector_bits=128,
    )


_FIELDS = {f.name for f in fields(Target)} - {"source"}


def load_target_file(path: Path) -> Target:
    """Read one user target from a TOML file; unknown keys and bad values name the file."""
    try:
        entry = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise TargetError(f"{path}: not a readable TOML target file ({e})") from e
    unknown = set(entry) - _FIELDS
    if unknown:
        raise TargetError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FIELDS))}")
    missing = {"name", "arch", "tvm"} - set(entry)
    if missing:
        raise TargetError(f"{path}: missing required key(s) {', '.join(sorted(missing))}")
    try:
        return make_target(**entry, source=str(path))
    except TypeError as e:
        raise TargetError(f"{path}: {e}") from e


def user_target_dirs() -> list[Path]:
    """Folders searched for ``*.toml`` targets: $PRUNE_EXPORT_TARGETS, then ~/.config/prune-and-export/targets."""
    dirs = [Path(p) for p in os.environ.get(USER_DIR_ENV, "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".config" / "prune-and-export" / "targets")
    return dirs


def all_targets(include_native: bool = True) -> dict[str, Target]:
    """Every known target by name: built-ins, then user TOML files (a user file may override a built-in)."""
    found = {"x86_64": x86_64_target()}  # resolved when asked: the host CPU's name is cached, TVM is not loaded
    found.update({t.name: t for t in BUILTIN})
    if include_native:
        try:
            found["native"] = native_target()
        except TargetError:
            pass
    for folder in user_target_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                t = load_target_file(path)
                found[t.name] = t
    return found


def get_target(name: str) -> Target:
    """The target called ``name``, or a TargetError listing the known names."""
    known = all_targets()
    if name not in known:
        raise TargetError(f"unknown target {name!r}; known: {', '.join(known)}")
    return known[name]


def parse_target_list(text: str) -> list[Target]:
    """``"x86_64,cortex-a72"`` -> Targets, in order, without duplicates; an unknown name is an error."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise TargetError("no target given (expected a comma-separated list such as x86_64,cortex-a72)")
    seen: dict[str, Target] = {}
    for n in names:
        if n not in seen:
            seen[n] = get_target(n)
    return list(seen.values())


def with_runner(target: Target, runner: str) -> Target:
    """The same target with another default runner (e.g. ``ssh://pi@raspberrypi.local``)."""
    return replace(target, runner=runner)
