"""export/: a pruned controller to a verified bundle (ONNX + TVM libraries + Cortex-M firmware) and sessions
with the device that runs it. This file is the public face: tools/ imports from ``export`` only."""

from export import frames
from export.bundle import Manifest, load_bundle, move_into_place, read_manifest, verify_bundle, versions
from export.device import open_session, run_stub_batch
from export.errors import ExportError
from export.keys import read_public_key
from export.mcu.firmware import DoesNotFit
from export.mcu.int_firmware import integer_only, load_int_model
from export.mcu.int_model import IntModel, build_int_model
from export.mcu.session import FirmwareSession, qemu_available
from export.onnx_export import OPSET, export_onnx, ort_actions, ort_session
from export.parity import PARITY_TOLERANCE
from export.pipeline import export_bundle
from export.runtime import cache_root
from export.scratch import scratch_dir, scratch_in
from export.session import DeviceSession, Reply, StubFailed
from export.signing import (
    SignatureRefused,
    generate_keypair,
    public_key_hex,
    sign_bundle,
    verify_bundle_signature,
)
from export.spec import ControllerSpec
from export.stub import STUB_MODEL_ENV, STUB_SOURCES, StubSession, run_stub_bench
from export.tvm_compile import build, check_supported_ops, import_onnx, lower
from export.verify import run_library_in_process

__all__ = [
    "OPSET",
    "PARITY_TOLERANCE",
    "STUB_MODEL_ENV",
    "STUB_SOURCES",
    "ControllerSpec",
    "DeviceSession",
    "DoesNotFit",
    "ExportError",
    "FirmwareSession",
    "IntModel",
    "Manifest",
    "Reply",
    "SignatureRefused",
    "StubFailed",
    "StubSession",
    "build",
    "build_int_model",
    "cache_root",
    "check_supported_ops",
    "export_bundle",
    "export_onnx",
    "frames",
    "generate_keypair",
    "import_onnx",
    "integer_only",
    "load_bundle",
    "load_int_model",
    "lower",
    "move_into_place",
    "open_session",
    "ort_actions",
    "ort_session",
    "public_key_hex",
    "qemu_available",
    "read_manifest",
    "read_public_key",
    "run_library_in_process",
    "run_stub_batch",
    "run_stub_bench",
    "scratch_dir",
    "scratch_in",
    "sign_bundle",
    "verify_bundle",
    "verify_bundle_signature",
    "versions",
]
