"""What the machine we run on is: architecture, LLVM CPU name, SIMD features."""

from __future__ import annotations

import functools
import platform
from pathlib import Path


def host_arch() -> str:
    """Architecture family of this machine: ``x86_64``, ``aarch64`` or ``armv7``."""
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "aarch64"
    if machine.startswith("armv7") or machine == "armv8l":
        return "armv7"
    return machine


@functools.lru_cache(maxsize=1)
def host_cpu() -> str:
    """LLVM's name for this CPU (e.g. ``znver3``): TVM ignores ``mcpu: native``, so we ask LLVM directly."""
    import tvm.target.codegen  # local import: listing targets should not need TVM loaded

    return str(tvm.target.codegen.llvm_get_system_cpu())


@functools.lru_cache(maxsize=1)
def host_cpu_flags() -> frozenset[str]:
    """CPU feature flags from /proc/cpuinfo (``avx2``, ``fma``, ``asimd``...); empty when unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()
