"""What the machine we run on is: architecture, LLVM CPU name, SIMD features."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path

from targets.cache import cache_root


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
    """LLVM's name for this CPU (e.g. ``znver3``): TVM ignores ``mcpu: native``, so we ask TVM's LLVM directly.

    Asked once per machine and TVM version, then read from the cache: listing targets must not load TVM (2-3 s).
    """
    path = cache_root() / "host_cpu" / _host_key()
    try:
        cached = path.read_text().strip()
    except OSError:
        cached = ""
    if cached:
        return cached
    import tvm.target.codegen  # deferred: only the first call on a machine pays for loading TVM

    name = str(tvm.target.codegen.llvm_get_system_cpu())
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(name + "\n")
        tmp.replace(path)  # atomic: a concurrent reader sees the old state or the whole name
    except OSError:
        pass  # a read-only cache only costs the TVM import next time
    return name


def _host_key() -> str:
    """What the CPU name depends on: the machine, its CPU model and flags, and the LLVM inside TVM."""
    try:
        tvm_version = metadata.version("apache-tvm")
    except metadata.PackageNotFoundError:
        tvm_version = "?"
    model = ""
    try:
        model = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), ""
        )
    except OSError:
        pass
    text = "|".join([platform.machine(), model, " ".join(sorted(host_cpu_flags())), tvm_version])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
