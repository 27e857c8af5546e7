"""The bundle: one folder per export, written atomically, checked by hash whenever it is read.

Layout (the firmware stub relies on these names)::

    manifest.json   format_version, source sha256, spec, inputs/outputs, versions, onnx{...},
                    artifacts{<target>: {file, sha256, bytes, tvm_target, compile, verification, ...}}
    model.onnx      the simplified ONNX graph
    <target>.so     one Relax VM library per target; function "main" takes float32[1, obs_dim]
    <target>.plan   runtime-free Linux targets (armv7): the kernel plan the stub runs the library with
                    (format in firmware_stub/model_kernels.c), recorded as artifacts[<target>].plan
    <target>.elf    microcontroller targets (kind "mcu") instead: the firmware image, with
                    <target>_model.c, <target>_kernels.o and pae_mcu_model.h (export/mcu/);
                    the manifest records flash_bytes and ram_bytes of the linked image
    <target>.boot   signed bundles, mcu targets: the image's signature for the boot stage (export/mcu/boot.py)
    manifest.sig    signed bundles only: ed25519 signature of manifest.json's exact bytes (export/signing.py)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import tvm
from tvm import relax

from export.errors import ExportError
from export.spec import ControllerSpec
from export.verification import VERIFIED

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_record(path: Path) -> dict:
    """A manifest's record of one bundle file: its name, sha256 and size."""
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def versions() -> dict[str, str | None]:
    """Installed versions of the packages an export depends on (None: not installed)."""
    out: dict[str, str | None] = {}
    for dist in ("apache-tvm", "apache-tvm-ffi", "onnx", "onnxruntime", "onnxsim", "torch", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


@dataclass
class Manifest:
    """Everything a bundle promises; ``manifest.json`` is ``to_dict()`` of this."""

    format_version: int
    created_utc: str
    source: dict  # {"path", "sha256", "architecture"} of the controller the bundle was made from
    spec: dict  # ControllerSpec.to_dict()
    inputs: list[dict]  # [{"name", "shape", "dtype", "low", "high"}]
    outputs: list[dict]
    param_count: int
    versions: dict
    onnx: dict  # {"file", "sha256", "bytes", opset, parity...}
    artifacts: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The manifest as JSON-ready data (what manifest.json holds)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Manifest:
        """The manifest from parsed manifest.json; a missing key raises KeyError."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})

    @property
    def controller_spec(self) -> ControllerSpec:
        """The controller's contract (observation and action shapes and bounds)."""
        return ControllerSpec.from_dict(self.spec)

    def verifications(self) -> dict[str, dict]:
        """Per-target verification records (status, max_abs_err, reason)."""
        return {name: a.get("verification", {}) for name, a in self.artifacts.items()}

    @property
    def all_verified(self) -> bool:
        """Whether every artifact ran here and matched onnxruntime."""
        return all(v.get("status") == VERIFIED for v in self.verifications().values())


def move_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished temp folder onto the destination; an old bundle is removed only after."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(bundle_dir: Path) -> Manifest:
    """Parse ``manifest.json`` without checking hashes (use :func:`verify_bundle` for that)."""
    path = Path(bundle_dir) / MANIFEST
    if not path.is_file():
        raise ExportError(f"{bundle_dir}: not a bundle (no {MANIFEST})")
    return parse_manifest(path.read_bytes(), path)


def parse_manifest(data: bytes, path: Path) -> Manifest:
    """The manifest of ``data``, the bytes of ``path`` (named in errors); no hash is checked."""
    try:
        manifest = Manifest.from_dict(json.loads(data.decode()))
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise ExportError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from e
    if manifest.format_version != FORMAT_VERSION:
        raise ExportError(
            f"{path}: bundle format_version {manifest.format_version!r}, this tool reads {FORMAT_VERSION}"
        )
    return manifest


def _check_file(bundle_dir: Path, record: dict, what: str) -> None:
    name = str(record.get("file", ""))
    if not name or Path(name).name != name:
        raise ExportError(f"{bundle_dir}/{MANIFEST}: {what} has a bad file name {name!r}")
    path = Path(bundle_dir) / name
    if not path.is_file():
        raise ExportError(f"{path}: missing ({what} is listed in the manifest)")
    size = path.stat().st_size
    if size != record.get("bytes"):
        raise ExportError(f"{path}: {size} bytes, manifest says {record.get('bytes')} ({what} was changed)")
    digest = sha256_file(path)
    if digest != record.get("sha256"):
        raise ExportError(
            f"{path}: sha256 {digest[:12]}... does not match the manifest's "
            f"{str(record.get('sha256'))[:12]}... ({what} was changed)"
        )


def verify_bundle(bundle_dir: Path) -> Manifest:
    """Re-hash every file the manifest lists; any mismatch raises ExportError naming the file."""
    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    check_manifest_files(bundle_dir, manifest)
    return manifest


def check_manifest_files(bundle_dir: Path, manifest: Manifest) -> None:
    """Re-hash every file ``manifest`` lists (ONNX, libraries, kernel plans, firmware and its sources)."""
    _check_file(bundle_dir, manifest.onnx, "the ONNX model")
    for name, record in manifest.artifacts.items():
        _check_file(bundle_dir, record, f"the {'firmware' if record.get('kind') == 'mcu' else 'library'} for {name}")
        if record.get("plan") is not None:  # runtime-free Linux targets: the kernel plan the stub runs
            _check_file(bundle_dir, record["plan"], f"the kernel plan for {name}")
        if record.get("boot_record") is not None:  # signed mcu bundles: the image's signature for its boot stage
            _check_file(bundle_dir, record["boot_record"], f"the boot record for {name}")
        for key, source in (record.get("sources") or {}).items():  # mcu: the generated C, kernels object, header
            _check_file(bundle_dir, source, f"{key} of {name}")


def load_bundle(bundle_dir: Path, target: str):
    """A ``relax.VirtualMachine`` on the bundle's library for ``target`` (host architecture), after the hash check."""
    manifest = verify_bundle(bundle_dir)
    if target not in manifest.artifacts:
        raise ExportError(f"{bundle_dir}: no library for target {target!r} (has: {', '.join(manifest.artifacts)})")
    lib = Path(bundle_dir) / manifest.artifacts[target]["file"]
    return relax.VirtualMachine(tvm.runtime.load_module(str(lib)), tvm.cpu())
