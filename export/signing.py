"""Signed bundles: an ed25519 key pair, the signature of ``manifest.json``, and its check on the host.

What is signed is the exact bytes of ``manifest.json`` as written (no re-serialisation, no
canonical form to agree on): it lists the sha256 and size of every file of the bundle
(``model.onnx``, each library, each kernel plan, each firmware image and its sources) and holds the
controller's spec (names, sizes, bounds), so every byte and field a device uses is either in the
signed bytes or hashed by them. The signature is the 64 raw bytes of ``manifest.sig`` beside it.
A microcontroller firmware image is signed on its own too (``<target>.boot``, the boot record its
boot stage checks: :mod:`export.mcu.boot`), listed in the manifest before the manifest is signed.
Format and device side: ``firmware_stub/SIGNING.md``.

Key files:

- private key: PKCS#8 PEM, unencrypted (``-----BEGIN PRIVATE KEY-----``; ``openssl pkey`` reads it),
  created with mode 0600 and never overwritten;
- public key: the 32-byte ed25519 key as 64 lowercase hex digits and a newline (what the stub's
  ``--public-key FILE`` reads; easy to compare by eye and to build into a firmware image).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from export.bundle import MANIFEST, Manifest, check_manifest_files, parse_manifest
from export.errors import ExportError
from export.keys import read_public_key
from export.mcu.boot import boot_record, flash_image, signed_message

SIGNATURE = "manifest.sig"
SIGNATURE_BYTES = 64


class SignatureRefused(ExportError):
    """A bundle is unsigned, signed with another key, or its signature does not match its manifest."""


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a new ed25519 key pair (private PEM 0600, public hex); returns the public key's hex.

    Neither file may exist already: a key is never overwritten.
    """
    private_path, public_path = Path(private_path), Path(public_path)
    for p in (private_path, public_path):
        if p.exists():
            raise ExportError(f"{p}: exists already (a key file is never overwritten)")
        if not p.parent.is_dir():
            raise ExportError(f"{p.parent}: no such folder")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_hex = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise ExportError(f"{private_path}: cannot create ({e.strerror})") from e
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    try:
        _write_atomically(public_path, (public_hex + "\n").encode())
    except OSError as e:
        private_path.unlink(missing_ok=True)
        raise ExportError(f"{public_path}: cannot write ({e.strerror})") from e
    return public_hex


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The ed25519 private key of a PKCS#8 PEM file (as :func:`generate_keypair` writes)."""
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise ExportError(f"{path}: cannot read the private key ({e.strerror})") from e
    except (ValueError, TypeError) as e:
        raise ExportError(f"{path}: not an unencrypted PEM private key ({e})") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ExportError(f"{path}: a {type(key).__name__}, not an ed25519 key")
    return key


def public_key_hex(private_key_path: Path) -> str:
    """The hex public key belonging to a private key file."""
    pub = load_private_key(private_key_path).public_key()
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def sign_bundle(bundle_dir: Path, private_key_path: Path) -> str:
    """Sign a bundle: write ``manifest.sig``, the signature of ``manifest.json``'s exact bytes.

    Every file the manifest lists is re-hashed first (a bundle whose files disagree with its manifest
    is not signed). Returns the public key's hex.
    """
    bundle_dir = Path(bundle_dir)
    key = load_private_key(private_key_path)
    data = _manifest_bytes(bundle_dir)
    check_manifest_files(bundle_dir, parse_manifest(data, bundle_dir / MANIFEST))
    raw = json.loads(data.decode())
    if _sign_firmware(bundle_dir, raw, key):  # the boot records are listed in the manifest, then it is signed
        data = (json.dumps(raw, indent=2, allow_nan=False) + "\n").encode()
        _write_atomically(bundle_dir / MANIFEST, data)
    _write_atomically(bundle_dir / SIGNATURE, key.sign(data))
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _sign_firmware(bundle_dir: Path, manifest: dict, key: Ed25519PrivateKey) -> bool:
    """Write ``<target>.boot`` for each microcontroller image and record it in ``manifest``; whether any."""
    signed = False
    for name, record in manifest.get("artifacts", {}).items():
        if record.get("kind") != "mcu":
            continue
        image = flash_image((bundle_dir / str(record["file"])).read_bytes())
        path = bundle_dir / f"{name}.boot"
        data = boot_record(key.sign(signed_message(image)), image)
        _write_atomically(path, data)
        record["boot_record"] = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        signed = True
    return signed


def _manifest_bytes(bundle_dir: Path) -> bytes:
    path = bundle_dir / MANIFEST
    if not path.is_file():
        raise ExportError(f"{bundle_dir}: not a bundle (no {MANIFEST})")
    return path.read_bytes()


def check_signature(data: bytes, signature: bytes, public_key: bytes, where: str) -> None:
    """Raise SignatureRefused unless ``signature`` is ``public_key``'s ed25519 signature of ``data``."""
    if len(signature) != SIGNATURE_BYTES:
        raise SignatureRefused(f"{where}: {len(signature)} bytes, an ed25519 signature has {SIGNATURE_BYTES}")
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except InvalidSignature as e:
        raise SignatureRefused(
            f"{where}: the signature does not match the manifest for public key "
            f"{public_key.hex()[:16]}... (wrong key, or the manifest was changed)"
        ) from e


def verify_bundle_signature(bundle_dir: Path, public_key_path: Path) -> Manifest:
    """Check ``manifest.sig`` against ``manifest.json`` with the public key, then re-hash every file listed.

    The manifest returned is parsed from the very bytes whose signature was checked. Raises
    SignatureRefused (unsigned, wrong key, changed manifest) or ExportError (a file differs from its hash).
    """
    bundle_dir = Path(bundle_dir)
    public_key = read_public_key(public_key_path)
    data = _manifest_bytes(bundle_dir)
    sig_path = bundle_dir / SIGNATURE
    if not sig_path.is_file():
        raise SignatureRefused(
            f"{bundle_dir}: unsigned bundle (no {SIGNATURE}); a public key was given, "
            "so only bundles signed with its private key are accepted"
        )
    check_signature(data, sig_path.read_bytes(), public_key, str(sig_path))
    manifest = parse_manifest(data, bundle_dir / MANIFEST)
    check_manifest_files(bundle_dir, manifest)
    return manifest
