"""The TVM runtime of one architecture for the Linux stub, and the cache both live in.

On this machine's architecture the installed wheels' ``libtvm_runtime.so`` and ``libtvm_ffi.so``
are copied into the cache; for aarch64 the manylinux wheels are fetched with pip and the two
libraries kept; armv7 has none (its stub runs without a runtime, see :mod:`export.stub`).
The tvm_ffi C headers (architecture-independent) serve the stub and the firmware builds alike.

Nothing in the cache is trusted because it is there: the fetched wheels are pinned by sha256
(``pip download --require-hashes``), the libraries taken from them are pinned too and re-hashed
whenever the cached copy is reused; the copy of this machine's installed libraries is compared with
the installed files on every reuse. A cached runtime that differs is replaced, never used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from export.errors import ExportError
from export.scratch import discard, scratch_dir
from targets import cache_root, host_arch

TVM_VERSION = "0.27.0.post1"
TVM_FFI_VERSION = "0.1.14.post0"
# pip platform tag of the manylinux wheels per architecture (none exist for armv7)
WHEEL_PLATFORMS = {"aarch64": "manylinux_2_28_aarch64"}
RUNTIME_LIBS = ("libtvm_runtime.so", "libtvm_ffi.so")
# sha256 of the wheels pip may fetch per architecture (CPython 3.11, the version pyproject.toml allows),
# and of the two libraries taken from them; a new TVM version needs new pins (pip download, sha256sum).
WHEEL_HASHES = {
    "aarch64": {
        f"apache-tvm=={TVM_VERSION}": "4acfdb7653e4e1ba7a707bdf2833db72eb8fda7d04d99141f2a4e1da43171fb7",
        f"apache-tvm-ffi=={TVM_FFI_VERSION}": "d1a011a0743acb88ffc650c70bfb1376fa90cb7196b042598c6d0c1e690ce185",
    },
}
LIBRARY_HASHES = {
    "aarch64": {
        "libtvm_runtime.so": "ba06950fac134b8d71549111fad2c6605cd6f738061fe0482f217c37ccbdff05",
        "libtvm_ffi.so": "255ca850a0714b1c27bcc0841a53d479fa0100459d08a1fdddc852ab8a6214f7",
    },
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache_matches(d: Path, want: dict[str, str]) -> bool:
    """Whether folder ``d`` holds exactly the files ``want`` names, with those sha256."""
    try:
        return all(_sha256((d / name).read_bytes()) == digest for name, digest in want.items())
    except OSError:
        return False


def _discard(d: Path) -> None:
    """Move a cached folder out of the way and delete it (it is not used again)."""
    if d.exists():
        discard(d)


def _site_package(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ExportError(f"Python package {name!r} is not installed (pip install apache-tvm=={TVM_VERSION})")
    return Path(list(spec.submodule_search_locations)[0])


def ffi_include_dir() -> Path:
    """tvm_ffi's C++ headers (architecture-independent; the installed wheel's)."""
    return _site_package("tvm_ffi") / "include"


@dataclass(frozen=True)
class Runtime:
    """The TVM runtime libraries of one architecture, and where they came from."""

    arch: str
    lib_dir: Path  # holds libtvm_runtime.so and libtvm_ffi.so
    origin: str

    def library_bytes(self) -> int:
        """Bytes of the two runtime libraries (what a board must hold besides the model)."""
        return sum((self.lib_dir / n).stat().st_size for n in RUNTIME_LIBS)


def runtime_for(arch: str) -> Runtime:
    """The TVM runtime for ``arch``: the installed wheels on this machine's arch, else fetched with pip."""
    if arch == host_arch():
        tvm_lib, ffi_lib = _site_package("tvm") / "lib", _site_package("tvm_ffi") / "lib"
        d = cache_root() / "runtime" / f"{arch}-{TVM_VERSION}-{TVM_FFI_VERSION}-installed"
        installed = {
            "libtvm_runtime.so": (tvm_lib / "libtvm_runtime.so").read_bytes(),
            "libtvm_ffi.so": (ffi_lib / "libtvm_ffi.so").read_bytes(),
        }
        if not _cache_matches(d, {n: _sha256(data) for n, data in installed.items()}):
            _discard(d)
            _fill_atomically(d, installed)
        return Runtime(arch, d, "installed wheels")
    if arch in WHEEL_PLATFORMS:
        d = cache_root() / "runtime" / f"{arch}-{TVM_VERSION}-{TVM_FFI_VERSION}"
        if not _cache_matches(d, LIBRARY_HASHES[arch]):
            _discard(d)
            _fetch_wheel_runtime(arch, d)
        return Runtime(arch, d, f"pip wheels ({WHEEL_PLATFORMS[arch]})")
    raise ExportError(
        f"no TVM runtime for architecture {arch!r}: apache-tvm publishes no {arch} wheels, and the sources its "
        "wheel ships lack headers the runtime needs (tvm/support/serializer.h, tvm/support/io.h, "
        "support/utils.h, builtin_fp16.h); armv7 uses the runtime-free stub instead (firmware_stub/PROTOCOL.md)"
    )


def _fill_atomically(dest: Path, files: dict[str, bytes]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir(dest.parent, f".{dest.name}.fill-")
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    try:
        tmp.rename(dest)
    except OSError:  # another process filled it first
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch_wheel_runtime(arch: str, dest: Path) -> None:
    """pip download the manylinux wheels of apache-tvm and apache-tvm-ffi for ``arch``; keep the two libraries."""
    platform = WHEEL_PLATFORMS[arch]
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"  # each wheel pinned by its sha256: pip refuses any other
        requirements.write_text(
            "".join(f"{req} --hash=sha256:{digest}\n" for req, digest in WHEEL_HASHES[arch].items())
        )
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--no-deps",
            "--require-hashes",
            "--platform",
            platform,
            "--python-version",
            py,
            "-d",
            tmp,
            "-r",
            str(requirements),
        ]
        print(f"fetching the {arch} TVM runtime: {' '.join(cmd[2:])}", file=sys.stderr)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ExportError(f"cannot fetch the {arch} TVM runtime wheels with pip: {last}")
        members = {"tvm/lib/libtvm_runtime.so": "libtvm_runtime.so", "tvm_ffi/lib/libtvm_ffi.so": "libtvm_ffi.so"}
        found: dict[str, bytes] = {}
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as z:
                for member, name in members.items():
                    if member in z.namelist():
                        found[name] = z.read(member)
        missing = set(RUNTIME_LIBS) - set(found)
        if missing:
            raise ExportError(f"the {arch} wheels hold no {', '.join(sorted(missing))}")
        for name, data in found.items():
            if _sha256(data) != LIBRARY_HASHES[arch][name]:
                raise ExportError(
                    f"{name} of the {arch} wheels has sha256 {_sha256(data)[:12]}..., not the pinned "
                    f"{LIBRARY_HASHES[arch][name][:12]}... (export/runtime.py): not used"
                )
        _fill_atomically(dest, found)
