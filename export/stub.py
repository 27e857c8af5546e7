"""The controller on the device: build the C++ stub for a target, find that target's TVM runtime, run it.

``build_stub(target)`` compiles ``firmware_stub/`` with the target's (cross) compiler against the TVM
runtime of the target's architecture (the installed wheels for this machine's; the manylinux
wheels fetched with pip for aarch64; none for armv7, whose stub calls the library's kernels from a
plan made by :func:`kernel_plan`) into a cache folder, never into the source tree.
:class:`StubSession` starts ``pae_stub serve`` through the target's runner (native, qemu-user, ssh)
and speaks the frame protocol with it; :func:`run_stub_batch` is the one-call version returning the
device's actions for a batch of observations.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from export import frames
from export.errors import ExportError

STUB_SOURCES = Path(__file__).resolve().parent.parent / "firmware_stub"
CACHE_ENV = "PRUNE_EXPORT_CACHE"
TVM_VERSION = "0.27.0.post1"
TVM_FFI_VERSION = "0.1.14.post0"
# pip platform tag of the manylinux wheels per architecture (none exist for armv7)
WHEEL_PLATFORMS = {"aarch64": "manylinux_2_28_aarch64"}
# architectures without any TVM runtime build: the stub calls the library's kernels from a plan instead
KERNEL_PLAN_ARCHS = ("armv7",)
RUNTIME_LIBS = ("libtvm_runtime.so", "libtvm_ffi.so")
EXIT_CODES = {2: "usage error", 3: "bundle refused", 4: "model failed to load", 5: "I/O error"}


def cache_root() -> Path:
    """Where built stubs and fetched runtimes live: $PRUNE_EXPORT_CACHE or ~/.cache/prune-and-export."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "prune-and-export"


def _site_package(name: str) -> Path:
    import importlib.util

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
        return sum((self.lib_dir / n).stat().st_size for n in RUNTIME_LIBS)


def _target(name: str):
    from targets import get_target

    target = get_target(name)
    if target.kind != "linux":
        raise ExportError(f"target {name!r} is a {target.kind} target: the Linux stub does not run there")
    return target


def _host_arch() -> str:
    from targets.host import host_arch

    return host_arch()


def runtime_for(arch: str) -> Runtime:
    """The TVM runtime for ``arch``: the installed wheels on this machine's arch, else fetched with pip."""
    if arch == _host_arch():
        tvm_lib, ffi_lib = _site_package("tvm") / "lib", _site_package("tvm_ffi") / "lib"
        d = cache_root() / "runtime" / f"{arch}-{TVM_VERSION}-{TVM_FFI_VERSION}-installed"
        if not all((d / n).exists() for n in RUNTIME_LIBS):
            _fill_atomically(d, {"libtvm_runtime.so": (tvm_lib / "libtvm_runtime.so").read_bytes(),
                                 "libtvm_ffi.so": (ffi_lib / "libtvm_ffi.so").read_bytes()})
        return Runtime(arch, d, "installed wheels")
    if arch in WHEEL_PLATFORMS:
        d = cache_root() / "runtime" / f"{arch}-{TVM_VERSION}-{TVM_FFI_VERSION}"
        if not all((d / n).exists() for n in RUNTIME_LIBS):
            _fetch_wheel_runtime(arch, d)
        return Runtime(arch, d, f"pip wheels ({WHEEL_PLATFORMS[arch]})")
    raise ExportError(
        f"no TVM runtime for architecture {arch!r}: apache-tvm publishes no {arch} wheels, and the sources its "
        "wheel ships lack headers the runtime needs (tvm/support/serializer.h, tvm/support/io.h, "
        "support/utils.h, builtin_fp16.h); armv7 uses the runtime-free stub instead (firmware_stub/PROTOCOL.md)"
    )


def _fill_atomically(dest: Path, files: dict[str, bytes]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
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
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
               "--platform", platform, "--python-version", py, "-d", tmp,
               f"apache-tvm=={TVM_VERSION}", f"apache-tvm-ffi=={TVM_FFI_VERSION}"]
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
        _fill_atomically(dest, found)


def _sources_digest(extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(STUB_SOURCES.iterdir()):
        if p.suffix in (".c", ".cc", ".h") or p.name == "Makefile":
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def uses_kernel_plan(target_name: str) -> bool:
    """Whether the stub for this target runs without the TVM runtime (kernels called from a plan file)."""
    arch = _target(target_name).arch
    return arch in KERNEL_PLAN_ARCHS and arch != _host_arch() and arch not in WHEEL_PLATFORMS


def build_stub(target_name: str) -> Path:
    """Build (or reuse from the cache) the stub for ``target_name``; returns the ``pae_stub`` executable.

    Its folder holds ``pae_stub`` and ``lib/`` with the runtime libraries (found through the rpath
    ``$ORIGIN/lib``), so the folder can be copied to a board as it is. One build serves every
    target of the same architecture: the stub's own code is not performance critical. On armv7,
    where no TVM runtime exists, the stub is built without one (``MODEL=kernels``, see
    ``firmware_stub/model_kernels.c``) and ``lib/`` stays empty.
    """
    target = _target(target_name)
    kernels = uses_kernel_plan(target_name)
    runtime = None if kernels else runtime_for(target.arch)
    cc, cxx = shutil.which(target.cc), shutil.which(target.cxx)
    if cc is None or cxx is None:
        raise ExportError(f"target {target_name!r}: compilers {target.cc!r}/{target.cxx!r} not found on PATH "
                          f"(Debian: apt-get install {target.toolchain_package})")
    origin = "kernels" if kernels else runtime.origin
    key = _sources_digest(f"{target.arch}|{cc}|{cxx}|{origin}|{TVM_VERSION}|{TVM_FFI_VERSION}")
    out = cache_root() / "stub" / f"{target.arch}-{key}"
    exe = out / "pae_stub"
    if exe.exists():
        return exe
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        (tmp / "lib").mkdir()
        cmd = ["make", "--no-print-directory", "-C", str(STUB_SOURCES), f"OUT={tmp}", f"CC={cc}", f"CXX={cxx}",
               f"FFI_INC={ffi_include_dir()}", f"-j{min(2, os.cpu_count() or 1)}"]
        if kernels:
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
    import struct

    import onnx

    from export.mcu.codegen import CONSTANT, INPUT, INTERMEDIATE, kernel_chain
    from export.spec import ControllerSpec
    from export.tvm_compile import import_onnx, lower

    kind_code = {INPUT: 0, CONSTANT: 1, INTERMEDIATE: 2}  # the plan's tensor kinds (model_kernels.c)

    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    art = manifest.get("artifacts", {}).get(target_name, {})
    onnx_rec = manifest.get("onnx", {})
    onnx_path = bundle_dir / str(onnx_rec.get("file", "model.onnx"))
    data = onnx_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != onnx_rec.get("sha256"):
        raise ExportError(f"{onnx_path}: sha256 does not match the manifest: refusing to derive a kernel plan from it")
    flags = art.get("compile_flags") or {}
    pipeline = flags.get("pipeline", "scheduled")
    spec = ControllerSpec.from_dict(manifest["spec"])
    mod, _ = lower(import_onnx(onnx.load_from_string(data), spec), _target(target_name), pipeline,
                   bool(flags.get("fast_math", pipeline == "scheduled")))
    chain = kernel_chain(mod, f"{bundle_dir}: target {target_name!r}")
    blob = bytearray(b"PAEP" + struct.pack("<I", 1) + str(art.get("sha256", "")).encode().ljust(64, b"0")[:64])
    blob += struct.pack("<I", len(chain.tensors))
    for t in chain.tensors:
        blob += struct.pack(f"<II{len(t.shape)}I", kind_code[t.kind], len(t.shape), *t.shape)
        if t.data is not None:
            blob += t.data.astype("<f4").tobytes()
    blob += struct.pack("<I", len(chain.calls))
    for name, args in chain.calls:
        raw = name.encode()
        blob += struct.pack("<I", len(raw)) + raw + struct.pack(f"<I{len(args)}I", len(args), *args)
    blob += struct.pack("<I", chain.output)
    return bytes(blob)


# --- running ----------------------------------------------------------------------------------


def read_manifest(bundle_dir: Path) -> dict:
    """The bundle's manifest.json, parsed; a missing or malformed one names the file."""
    path = Path(bundle_dir) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ExportError(f"{path}: no such file (is {bundle_dir} a bundle?)") from e
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: not readable JSON ({e})") from e


def artifact_file(bundle_dir: Path, target_name: str) -> Path:
    """The bundle's compiled library for ``target_name`` (as named by its manifest)."""
    art = read_manifest(bundle_dir).get("artifacts", {}).get(target_name)
    if not isinstance(art, dict) or "file" not in art:
        raise ExportError(f"{bundle_dir}/manifest.json: no artifact for target {target_name!r} "
                          "(export the bundle with this target)")
    return Path(bundle_dir) / str(art["file"])


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage(bundle_dir: Path, target_name: str, into: Path) -> list[str]:
    """Lay out what the device needs in ``into``: ``pae_stub``, ``lib/``, ``bundle/{manifest.json,<lib>}``.

    Returns the extra stub arguments the layout needs (``--plan plan.bin`` for a runtime-free stub).
    """
    exe = build_stub(target_name)
    lib = artifact_file(bundle_dir, target_name)
    if not lib.exists():
        raise ExportError(f"{lib}: no such file (named by the manifest for target {target_name!r})")
    (into / "lib").mkdir(parents=True, exist_ok=True)
    (into / "bundle").mkdir(exist_ok=True)
    _link_or_copy(exe, into / "pae_stub")
    for so in sorted((exe.parent / "lib").glob("*.so")):  # none for a runtime-free stub
        _link_or_copy(so, into / "lib" / so.name)
    shutil.copy2(Path(bundle_dir) / "manifest.json", into / "bundle" / "manifest.json")
    shutil.copy2(lib, into / "bundle" / lib.name)
    if uses_kernel_plan(target_name):
        (into / "plan.bin").write_bytes(kernel_plan(bundle_dir, target_name))
        return ["--plan", "plan.bin"]
    return []


class StubFailed(ExportError):
    """The stub exited or stopped answering; the message carries its last stderr line."""


@dataclass
class Reply:
    """One answer of the device to one observation."""

    seq: int
    action: np.ndarray
    error: str = ""  # empty for an ACTION frame, else the error code's name (payload = safe action)
    device_us: float = 0.0  # the stub's own measurement of the inference


@dataclass
class StubSession:
    """``pae_stub serve`` running for one bundle and target, spoken to over its stdin/stdout.

    Use as a context manager. ``extra_args`` go to ``serve`` (``--deadline-us``, ``--safe-action``...).
    """

    bundle_dir: Path
    target_name: str
    extra_args: tuple[str, ...] = ()
    runner: str | None = None  # None: the target's own runner (native, or qemu for another arch)
    timeout: float = 60.0  # seconds to wait for one reply (qemu start-up included)
    parser: frames.FrameParser = field(default_factory=frames.FrameParser)
    WINDOW = 64  # OBS frames in flight in infer_batch: keeps both pipe buffers far from full

    def __post_init__(self) -> None:
        self.bundle_dir = Path(self.bundle_dir)
        self.seq = 0
        self.obs_dim = self.act_dim = 0
        self._pending: list = []

    def __enter__(self) -> "StubSession":
        from targets import runner_for

        target = _target(self.target_name)
        self._stack = __import__("contextlib").ExitStack()
        try:
            self._dir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="pae_stage.")))
            extra = stage(self.bundle_dir, self.target_name, self._dir)
            self._runner = runner_for(target, self.runner)
            session = self._stack.enter_context(self._runner.session(self._dir))
            self._stderr = self._stack.enter_context(tempfile.TemporaryFile())
            cmd = ["./pae_stub", "serve", "--bundle", "bundle", "--target", self.target_name, *extra, *self.extra_args]
            self.proc = session.popen(cmd, stderr=self._stderr, bufsize=0)
            self._stack.callback(self._stop)
            hello = self.request(frames.HELLO, [])
            version, self.obs_dim, self.act_dim = (int(v) for v in hello.payload[:3])
            if version != frames.PROTOCOL_VERSION:
                raise StubFailed(f"{self.where}: protocol version {version}, this host speaks {frames.PROTOCOL_VERSION}")
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @property
    def where(self) -> str:
        return f"stub for {self.target_name!r} ({self._runner.describe() if hasattr(self, '_runner') else '?'})"

    def _stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()

    def stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

    def _failed(self, what: str) -> StubFailed:
        try:  # output closed usually means it is exiting: give it a moment so the exit code can be named
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        why = f"exit {code} ({EXIT_CODES.get(code, 'crashed' if code and code < 0 else 'stopped')})" if code is not None else what
        tail = self.stderr_tail()
        return StubFailed(f"{self.where}: {why}{': ' + tail if tail else ''}")

    def send(self, data: bytes) -> None:
        """Write raw bytes to the device (a frame, or anything else)."""
        try:
            self.proc.stdin.write(data)
        except (BrokenPipeError, OSError) as e:
            raise self._failed(f"write failed ({e})") from e

    def receive(self, timeout: float | None = None) -> frames.Frame | frames.FrameError | None:
        """The next frame (or rejected frame) from the device, or None after ``timeout`` seconds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        fd = self.proc.stdout.fileno()
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise self._failed("closed its output")
            self._pending.extend(self.parser.feed(chunk))
        return self._pending.pop(0)

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return self.seq

    def infer_batch(self, observations: np.ndarray, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Actions for each observation row, and each reply's ``aux`` (the device's inference time).

        Keeps up to ``window`` OBS frames in flight (the class's ``WINDOW`` unless given). Any ERROR reply
        raises, naming the row and the error.
        """
        obs = np.asarray(observations, dtype=np.float32)
        window = window or self.WINDOW
        out = np.empty((len(obs), self.act_dim), dtype=np.float32)
        aux = np.empty(len(obs), dtype=np.int64)
        first = self.seq + 1
        sent = received = 0
        while received < len(obs):
            while sent < len(obs) and sent - received < window:
                self.send(frames.encode(frames.OBS, self.next_seq(), obs[sent]))
                sent += 1
            item = self.receive()
            if item is None:
                raise self._failed(f"no reply to row {received} within {self.timeout:g} s")
            if isinstance(item, frames.FrameError):
                raise StubFailed(f"{self.where}: corrupt reply ({item.name})")
            if item.type == frames.HELLO:
                continue  # a late answer to a repeated start-up HELLO (the firmware's UART start-up)
            row = (item.seq - first) & 0xFFFFFFFF
            if item.type == frames.ERROR:
                raise StubFailed(f"{self.where}: row {row} got error '{item.error_name}' from the device")
            if item.type != frames.ACTION or row != received:
                raise StubFailed(f"{self.where}: expected the action for row {received}, got type {item.type} seq {item.seq}")
            out[row] = item.payload
            aux[row] = item.aux
            received += 1
        return out, aux

    def request(self, type_: int, payload) -> frames.Frame:
        """Send one frame and wait for the reply with the same seq (other replies are dropped)."""
        seq = self.next_seq()
        self.send(frames.encode(type_, seq, payload))
        while True:
            item = self.receive()
            if item is None:
                raise self._failed(f"no reply to seq {seq} within {self.timeout:g} s")
            if isinstance(item, frames.Frame) and item.seq == seq:
                return item

    def infer(self, obs) -> Reply:
        """The device's answer to one observation (an ACTION, or an ERROR with the safe action)."""
        f = self.request(frames.OBS, np.asarray(obs, dtype=np.float32).reshape(-1))
        return Reply(f.seq, f.payload, f.error_name, f.aux / 1e3)

    def stats(self) -> dict[str, int]:
        """The device's protocol counters (frames, CRC errors, resyncs, ...)."""
        f = self.request(frames.STATS, [])
        return {k: int(v) for k, v in zip(frames.STATS_FIELDS, f.payload)}


def open_session(bundle_dir: Path, target_name: str, extra_args: tuple[str, ...] = (),
                 runner: str | None = None) -> StubSession:
    """The device for ``target_name``: the Linux stub, or for a microcontroller target its firmware under qemu-system-arm."""
    from targets import get_target

    if get_target(target_name).kind == "mcu":
        from export.mcu.session import FirmwareSession

        return FirmwareSession(bundle_dir, target_name, extra_args=tuple(extra_args), runner=runner)
    return StubSession(bundle_dir, target_name, extra_args=tuple(extra_args), runner=runner)


def run_stub_batch(bundle_dir: Path, target_name: str, observations: np.ndarray, runner: str | None = None) -> np.ndarray:
    """The device's actions for each observation row: the stub run natively, under qemu-user or over ssh.

    ``runner`` overrides the target's own (``native``, ``qemu``, ``ssh://user@host``). Any ERROR reply
    (NaN input, failed inference, ...) raises, naming the row and the error.
    """
    obs = np.asarray(observations, dtype=np.float32)
    if obs.ndim != 2:
        raise ExportError(f"observations must be 2-D (N, obs_dim), got shape {obs.shape}")
    with open_session(bundle_dir, target_name, runner=runner) as s:
        if obs.shape[1] != s.obs_dim:
            raise ExportError(f"observations have {obs.shape[1]} columns, the bundle's controller takes {s.obs_dim}")
        return s.infer_batch(obs)[0]


def run_stub_bench(bundle_dir: Path, target_name: str, n: int = 2000, warmup: int = 100,
                   observations: np.ndarray | None = None) -> dict:
    """``pae_stub bench`` on the device: latency min/p50/p99/max/mean (us), peak RSS, model and library bytes."""
    from targets import runner_for

    with tempfile.TemporaryDirectory(prefix="pae_stage.") as tmp:
        d = Path(tmp)
        extra = stage(bundle_dir, target_name, d)
        cmd = ["./pae_stub", "bench", "--bundle", "bundle", "--target", target_name, *extra, "--n", str(n),
               "--warmup", str(warmup)]
        if observations is not None:
            np.asarray(observations, dtype="<f4").tofile(d / "obs.f32")
            cmd += ["--obs", "obs.f32"]
        runner = runner_for(_target(target_name))
        r = runner.run(d, cmd, timeout=600)
        if r.returncode != 0:
            tail = (r.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
            raise StubFailed(f"stub bench for {target_name!r} ({runner.describe()}): exit {r.returncode}: {tail}")
        result = json.loads(r.stdout.decode())
        result["runner"] = runner.describe()
        return result
