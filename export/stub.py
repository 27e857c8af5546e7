"""The Linux stub: build ``firmware_stub/`` for a target, lay out a bundle for it, run it.

``build_stub(target)`` compiles ``firmware_stub/`` with the target's (cross) compiler into a cache
folder, never into the source tree. By default the stub links no TVM runtime and calls the library's
kernels from a plan made by :func:`kernel_plan` (x86_64, aarch64, armv7); ``PAE_STUB_MODEL=tvm``
links the TVM runtime of the target's architecture instead (:mod:`export.runtime`: the installed
wheels for this machine's, the manylinux wheels fetched with pip for aarch64; none exists for armv7).
:class:`StubSession` starts ``pae_stub serve`` through the target's runner (native, qemu-user, ssh)
and speaks the frame protocol with it (:class:`export.session.DeviceSession`);
:func:`run_stub_bench` runs ``pae_stub bench`` there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import onnx

import export.frames as frames
from export.bundle import file_record, read_manifest, sha256_file
from export.errors import ExportError
from export.kernel_chain import CONSTANT, INPUT, INTERMEDIATE, kernel_chain
from export.runtime import (
    RUNTIME_LIBS,
    TVM_FFI_VERSION,
    TVM_VERSION,
    WHEEL_PLATFORMS,
    cache_root,
    ffi_include_dir,
    runtime_for,
)
from export.scratch import discard, scratch, scratch_dir
from export.session import DeviceSession, StubFailed
from export.tvm_compile import import_onnx, lower
from targets import Target, get_target, host_arch, runner_for

STUB_SOURCES = Path(__file__).resolve().parent.parent / "firmware_stub"
# architectures whose stub calls the library's kernels from a plan instead of running the Relax VM
# (armv7 has no TVM runtime build; on x86_64 and aarch64 the plan is faster: no VM in the hot path)
KERNEL_PLAN_ARCHS = ("x86_64", "aarch64", "armv7")
EXIT_CODES = {2: "usage error", 3: "bundle refused", 4: "model failed to load", 5: "I/O error", 6: "signature refused"}
PLAN_SUFFIX = ".plan"  # <target>.plan in the bundle: the kernel plan of a runtime-free target
BUILD_RECORD = "build.json"  # in a cached stub build: the sha256 of each file, re-checked on every reuse


def linux_target(name: str) -> Target:
    """The registered target ``name``, refused unless the Linux stub runs there."""
    target = get_target(name)
    if target.kind != "linux":
        raise ExportError(f"target {name!r} is a {target.kind} target: the Linux stub does not run there")
    return target


def _stub_source_files() -> list[Path]:
    """The files the stub is built from: this folder's C/C++ and Makefile, and the vendored Monocypher."""
    files = [p for p in STUB_SOURCES.iterdir() if p.suffix in (".c", ".cc", ".h") or p.name == "Makefile"]
    files += [p for p in (STUB_SOURCES / "third_party" / "monocypher").iterdir() if p.suffix in (".c", ".h")]
    return sorted(files)


def _sources_digest(extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in _stub_source_files():
        h.update(str(p.relative_to(STUB_SOURCES)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def _build_files(folder: Path) -> dict[str, str]:
    """sha256 of ``pae_stub`` and every runtime library of a stub build folder."""
    files = [folder / "pae_stub", *sorted((folder / "lib").glob("*.so"))]
    return {str(f.relative_to(folder)): sha256_file(f) for f in files if f.is_file()}


def _cached_build_intact(folder: Path) -> bool:
    """Whether a cached stub build still holds exactly the bytes recorded when it was built."""
    try:
        recorded = json.loads((folder / BUILD_RECORD).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(recorded, dict) and recorded == _build_files(folder)


# PAE_STUB_MODEL=tvm|kernels: choose the stub for every target that has a TVM runtime build (default: kernels)
STUB_MODEL_ENV = "PAE_STUB_MODEL"


def has_runtime(target_name: str) -> bool:
    """Whether a TVM runtime build exists for this target's architecture (this machine's, or a fetched wheel)."""
    arch = linux_target(target_name).arch
    return arch == host_arch() or arch in WHEEL_PLATFORMS


def uses_kernel_plan(target_name: str) -> bool:
    """Whether the stub for this target runs without the TVM runtime (kernels called from a plan file).

    Every architecture of ``KERNEL_PLAN_ARCHS`` does: with no runtime in the hot path a call costs the
    kernels alone (the Relax VM added 1.3-2.2 µs per call on x86_64). ``PAE_STUB_MODEL=tvm`` keeps the
    TVM runtime where one exists; armv7 has none, so its stub always runs from the plan.
    """
    arch = linux_target(target_name).arch
    choice = os.environ.get(STUB_MODEL_ENV, "")
    if choice not in ("", "kernels", "tvm"):
        raise ExportError(f"{STUB_MODEL_ENV}={choice!r}: expected 'kernels' or 'tvm'")
    if not has_runtime(target_name):
        return arch in KERNEL_PLAN_ARCHS
    return choice == "kernels" if choice else arch in KERNEL_PLAN_ARCHS


def build_stub(target_name: str, kernels: bool | None = None) -> Path:
    """Build (or reuse from the cache) the stub for ``target_name``; returns the ``pae_stub`` executable.

    Its folder holds ``pae_stub`` and ``lib/`` with the runtime libraries (found through the rpath
    ``$ORIGIN/lib``), so the folder can be copied to a board as it is. One build serves every
    target of the same architecture: the stub's own code is not performance critical. On armv7,
    where no TVM runtime exists, and by default on x86_64 and aarch64 (:func:`uses_kernel_plan`), the
    stub is built without one (``MODEL=kernels``, see ``firmware_stub/model_kernels.c``) and ``lib/``
    stays empty. ``kernels`` overrides that choice (False needs a runtime for the architecture).
    """
    target = linux_target(target_name)
    if kernels is None:
        kernels = uses_kernel_plan(target_name)
    runtime = None if kernels else runtime_for(target.arch)
    cc, cxx = shutil.which(target.cc), shutil.which(target.cxx)
    if cc is None or cxx is None:
        raise ExportError(
            f"target {target_name!r}: compilers {target.cc!r}/{target.cxx!r} not found on PATH "
            f"(Debian: apt-get install {target.toolchain_package})"
        )
    origin = "kernels" if runtime is None else runtime.origin
    key = _sources_digest(f"{target.arch}|{cc}|{cxx}|{origin}|{TVM_VERSION}|{TVM_FFI_VERSION}")
    out = cache_root() / "stub" / f"{target.arch}-{key}"
    exe = out / "pae_stub"
    if exe.exists():
        if _cached_build_intact(out):
            return exe
        # changed since it was built (or built before builds were recorded): never run it, build anew
        discard(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir(out.parent, f".{out.name}.build-")
    try:
        (tmp / "lib").mkdir()
        cmd = [
            "make",
            "--no-print-directory",
            "-C",
            str(STUB_SOURCES),
            f"OUT={tmp}",
            f"CC={cc}",
            f"CXX={cxx}",
            f"FFI_INC={ffi_include_dir()}",
            f"-j{min(2, os.cpu_count() or 1)}",
        ]
        if runtime is None:
            cmd.append("MODEL=kernels")
        else:
            for n in RUNTIME_LIBS:
                shutil.copy2(runtime.lib_dir / n, tmp / "lib" / n)
            cmd += [f"TVM_LIBDIR={runtime.lib_dir}", f"FFI_LIBDIR={runtime.lib_dir}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            errors = [ln for ln in r.stderr.splitlines() if "error" in ln] or r.stderr.splitlines()[-5:]
            raise ExportError(f"building the stub for {target_name!r} failed: {' | '.join(errors[:5])}")
        shutil.rmtree(tmp / "obj", ignore_errors=True)
        (tmp / BUILD_RECORD).write_text(json.dumps(_build_files(tmp), indent=1) + "\n")
        try:
            tmp.rename(out)
        except OSError:  # built concurrently by another process: keep theirs
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return exe


def kernel_plan(bundle_dir: Path, target_name: str) -> bytes:
    """The plan file of the runtime-free stub (format in ``firmware_stub/model_kernels.c``).

    The bundle's ``model.onnx`` (hash-checked) is lowered through the same TVM pipeline and flags the
    library was compiled with; the Relax main function must be a chain of ``call_tir`` kernels on
    float32 tensors, whose order, folded weights and intermediate shapes the plan records. The
    library's own sha256 goes in too: the stub refuses a plan made for another library.
    """
    kind_code = {INPUT: 0, CONSTANT: 1, INTERMEDIATE: 2}  # the plan's tensor kinds (model_kernels.c)
    int8_constant = 3  # weight-only int8 codes (export/int8_kernels.py), one byte each

    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    art = manifest.artifacts.get(target_name, {})
    onnx_rec = manifest.onnx
    onnx_path = bundle_dir / str(onnx_rec.get("file", "model.onnx"))
    data = onnx_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != onnx_rec.get("sha256"):
        raise ExportError(f"{onnx_path}: sha256 does not match the manifest: refusing to derive a kernel plan from it")
    flags = art.get("compile_flags") or {}
    pipeline = flags.get("pipeline", "scheduled")
    spec = manifest.controller_spec
    mod, _ = lower(
        import_onnx(onnx.load_from_string(data), spec),
        linux_target(target_name),
        pipeline,
        bool(flags.get("fast_math", pipeline == "scheduled")),
    )
    chain = kernel_chain(mod, f"{bundle_dir}: target {target_name!r}", int8=True)
    blob = bytearray(b"PAEP" + struct.pack("<I", 1) + str(art.get("sha256", "")).encode().ljust(64, b"0")[:64])
    blob += struct.pack("<I", len(chain.tensors))
    for t in chain.tensors:
        kind = int8_constant if t.dtype == "int8" else kind_code[t.kind]
        blob += struct.pack(f"<II{len(t.shape)}I", kind, len(t.shape), *t.shape)
        if t.data is not None:
            blob += t.data.astype("i1" if t.dtype == "int8" else "<f4").tobytes()
    blob += struct.pack("<I", len(chain.calls))
    for name, args in chain.calls:
        raw = name.encode()
        blob += struct.pack("<I", len(raw)) + raw + struct.pack(f"<I{len(args)}I", len(args), *args)
    blob += struct.pack("<I", chain.output)
    return bytes(blob)


def artifact_file(bundle_dir: Path, target_name: str) -> Path:
    """The bundle's compiled library for ``target_name`` (as named by its manifest)."""
    art = read_manifest(bundle_dir).artifacts.get(target_name)
    if not isinstance(art, dict) or "file" not in art:
        raise ExportError(
            f"{bundle_dir}/manifest.json: no artifact for target {target_name!r} (export the bundle with this target)"
        )
    return Path(bundle_dir) / str(art["file"])


def write_plan(bundle_dir: Path, target_name: str) -> dict:
    """Write ``<target>.plan`` into the bundle folder (from its manifest as written); its manifest record."""
    path = Path(bundle_dir) / f"{target_name}{PLAN_SUFFIX}"
    path.write_bytes(kernel_plan(bundle_dir, target_name))
    return file_record(path)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage(bundle_dir: Path, target_name: str, into: Path, public_key: Path | None = None) -> list[str]:
    """Lay out what the device needs in ``into``: ``pae_stub``, ``lib/``, ``bundle/{manifest.json,<lib>}``.

    A signed bundle's ``manifest.sig`` and a runtime-free target's plan go along. Returns the extra stub
    arguments the layout needs: ``--plan plan.bin`` for a runtime-free stub (the bundle's own
    ``<target>.plan``, else one derived here from ``model.onnx``: never with a key, where only what
    the signature covers is used), ``--public-key public_key`` when ``public_key`` is given (the
    stub then refuses anything not signed with its private key, before loading anything).
    """
    plan = (read_manifest(bundle_dir).artifacts.get(target_name) or {}).get("plan")
    planned = isinstance(plan, dict) and Path(str(plan.get("file", ""))).name == plan.get("file")
    kernels = uses_kernel_plan(target_name)
    if kernels and not planned and public_key is not None and has_runtime(target_name):
        kernels = False  # a signed bundle exported for the TVM runtime stub: its signature covers no plan
    exe = build_stub(target_name, kernels)
    lib = artifact_file(bundle_dir, target_name)
    if not lib.exists():
        raise ExportError(f"{lib}: no such file (named by the manifest for target {target_name!r})")
    (into / "lib").mkdir(parents=True, exist_ok=True)
    (into / "bundle").mkdir(exist_ok=True)
    _link_or_copy(exe, into / "pae_stub")
    for so in sorted((exe.parent / "lib").glob("*.so")):  # none for a runtime-free stub
        _link_or_copy(so, into / "lib" / so.name)
    shutil.copy2(Path(bundle_dir) / "manifest.json", into / "bundle" / "manifest.json")
    signature = Path(bundle_dir) / "manifest.sig"
    if signature.is_file():
        shutil.copy2(signature, into / "bundle" / "manifest.sig")
    shutil.copy2(lib, into / "bundle" / lib.name)
    extra: list[str] = []
    if public_key is not None:
        shutil.copy2(public_key, into / "public_key")
        extra += ["--public-key", "public_key"]
    if kernels:
        if isinstance(plan, dict) and planned:
            shutil.copy2(Path(bundle_dir) / str(plan["file"]), into / "plan.bin")  # the stub checks its sha256
        elif public_key is None:
            (into / "plan.bin").write_bytes(kernel_plan(bundle_dir, target_name))
        else:
            return extra  # signed use and no plan in the manifest: the stub refuses to run without one
        extra += ["--plan", "plan.bin"]
    return extra


class StubSession(DeviceSession):
    """``pae_stub serve`` running for one bundle and target, spoken to over its stdin/stdout.

    Use as a context manager. ``extra_args`` go to ``serve`` (``--deadline-us``, ``--safe-action``...).
    """

    def __enter__(self) -> StubSession:
        target = linux_target(self.target_name)
        try:
            self._dir = self._stack.enter_context(scratch("pae_stage."))
            extra = stage(self.bundle_dir, self.target_name, self._dir, self.public_key)
            self._runner = runner_for(target, self.runner)
            session = self._stack.enter_context(self._runner.session(self._dir))
            self._stderr = self._stack.enter_context(tempfile.TemporaryFile())
            cmd = ["./pae_stub", "serve", "--bundle", "bundle", "--target", self.target_name, *extra, *self.extra_args]
            self.proc = session.popen(cmd, stderr=self._stderr, bufsize=0)
            self._stack.callback(self._stop)
            self._check_hello(self.request(frames.HELLO, []))
        except BaseException:
            self._stack.close()
            raise
        return self

    @property
    def where(self) -> str:
        """The stub, its target and runner, for messages."""
        return f"stub for {self.target_name!r} ({self._runner.describe() if hasattr(self, '_runner') else '?'})"

    def _stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def _failed(self, what: str) -> StubFailed:
        try:  # output closed usually means it is exiting: give it a moment so the exit code can be named
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        why = (
            f"exit {code} ({EXIT_CODES.get(code, 'crashed' if code and code < 0 else 'stopped')})"
            if code is not None
            else what
        )
        tail = self.stderr_tail()
        return StubFailed(f"{self.where}: {why}{': ' + tail if tail else ''}")


def run_stub_bench(
    bundle_dir: Path,
    target_name: str,
    n: int = 2000,
    warmup: int = 100,
    observations: np.ndarray | None = None,
    public_key: Path | None = None,
) -> dict:
    """``pae_stub bench`` on the device: latency min/p50/p99/max/mean (us), peak RSS, model and library bytes."""

    with scratch("pae_stage.") as d:
        extra = stage(bundle_dir, target_name, d, public_key)
        cmd = [
            "./pae_stub",
            "bench",
            "--bundle",
            "bundle",
            "--target",
            target_name,
            *extra,
            "--n",
            str(n),
            "--warmup",
            str(warmup),
        ]
        if observations is not None:
            np.asarray(observations, dtype="<f4").tofile(d / "obs.f32")
            cmd += ["--obs", "obs.f32"]
        runner = runner_for(linux_target(target_name))
        r = runner.run(d, cmd, timeout=600)
        if r.returncode != 0:
            tail = (r.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
            raise StubFailed(f"stub bench for {target_name!r} ({runner.describe()}): exit {r.returncode}: {tail}")
        result = json.loads(r.stdout.decode())
        result["runner"] = runner.describe()
        return result
