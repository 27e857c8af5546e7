"""The boot stage of the Cortex-M firmware and the boot record a signed bundle carries for it.

The firmware image (``<target>.elf``) is linked at :data:`APP_BASE`; the boot stage
(``firmware_stub/mcu/boot.c``) sits at address 0 with the device's public key built in, checks the
boot record at :data:`RECORD_ADDR` (the ed25519 signature of a 16-byte header and the image's flash
bytes), and only then starts the image. Built without a key it starts the image unchecked (unsigned
bundles). Boot stages are built per key into the cache and re-hashed on every reuse, like the stub.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
from pathlib import Path

from export.errors import ExportError
from export.runtime import cache_root
from export.scratch import discard, scratch_dir

BOOT_SOURCES = Path(__file__).resolve().parent.parent.parent / "firmware_stub"
APP_BASE = 0x00010000
RECORD_ADDR = APP_BASE - 128
RECORD_BYTES = 128
MAGIC = b"PAEIMG01"
FLASH_END = 0x00400000
EXIT_SIGNATURE_REFUSED = 6  # the boot stage's semihosting exit status when it refuses the image
BUILD_RECORD = "build.json"


def flash_image(elf: bytes) -> bytes:
    """The flash bytes a loader writes for a little-endian ELF32 image linked at APP_BASE (gaps as zeros).

    Every loadable segment with file bytes is placed at its physical (load) address, as qemu's loader
    and a flash programmer do.
    """
    if elf[:4] != b"\x7fELF" or elf[4] != 1 or elf[5] != 1:
        raise ExportError("not a little-endian 32-bit ELF image")
    (phoff,) = struct.unpack_from("<I", elf, 28)
    phentsize, phnum = struct.unpack_from("<HH", elf, 42)
    segments = []
    for i in range(phnum):
        p_type, p_offset, _vaddr, p_paddr, p_filesz = struct.unpack_from("<IIIII", elf, phoff + i * phentsize)
        if p_type == 1 and p_filesz:  # PT_LOAD
            if p_paddr < APP_BASE or p_paddr + p_filesz > FLASH_END:
                raise ExportError(
                    f"the image loads {p_filesz} bytes at {p_paddr:#x}, outside the application's "
                    f"flash [{APP_BASE:#x}, {FLASH_END:#x})"
                )
            segments.append((p_paddr, elf[p_offset : p_offset + p_filesz]))
    if not segments:
        raise ExportError("the image has no loadable bytes")
    end = max(addr + len(data) for addr, data in segments)
    image = bytearray(end - APP_BASE)
    for addr, data in segments:
        image[addr - APP_BASE : addr - APP_BASE + len(data)] = data
    return bytes(image)


def signed_message(image: bytes) -> bytes:
    """What the boot stage checks the signature of: magic, base, length (16 bytes), then the image."""
    return MAGIC + struct.pack("<II", APP_BASE, len(image)) + image


def boot_record(signature: bytes, image: bytes) -> bytes:
    """The 128 bytes loaded at RECORD_ADDR: signature, 48 zeros, then the signed 16-byte header."""
    if len(signature) != 64:
        raise ExportError("an ed25519 signature has 64 bytes")
    return signature + bytes(48) + signed_message(image)[:16]


def _key_header(public_key: bytes | None) -> str:
    if public_key is None:
        return "/* no key: this boot stage starts the image unchecked (unsigned bundles) */\n"
    return "#define PAE_BOOT_KEY {" + ", ".join(f"0x{b:02x}" for b in public_key) + "}\n"


def _sources_digest(header: str) -> str:
    h = hashlib.sha256(header.encode())
    files = [BOOT_SOURCES / "mcu" / n for n in ("boot.c", "boot.ld", "Makefile")]
    files += sorted((BOOT_SOURCES / "third_party" / "monocypher").glob("*.[ch]"))
    for p in files:
        h.update(str(p.relative_to(BOOT_SOURCES)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def _intact(folder: Path) -> bool:
    try:
        recorded = json.loads((folder / BUILD_RECORD).read_text())
        return recorded == {"boot.elf": hashlib.sha256((folder / "boot.elf").read_bytes()).hexdigest()}
    except (OSError, ValueError):
        return False


def build_boot_stage(public_key: bytes | None, mcpu: str = "cortex-m4", cc: str = "arm-none-eabi-gcc") -> Path:
    """The boot stage ELF with ``public_key`` (32 bytes) built in, or without a key; built once per key and sources."""
    header = _key_header(public_key)
    out = cache_root() / "boot" / f"{mcpu}-{_sources_digest(header + mcpu + cc)}"
    elf = out / "boot.elf"
    if elf.exists():
        if _intact(out):
            return elf
        discard(out)  # changed since built: never run it
    if shutil.which(cc) is None:
        raise ExportError(f"{cc} not found on PATH (Debian: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = scratch_dir(out.parent, f".{out.name}.build-")
    try:
        (tmp / "boot_key.h").write_text(header)
        r = subprocess.run(
            [
                "make",
                "--no-print-directory",
                "-C",
                str(BOOT_SOURCES / "mcu"),
                "boot",
                f"OUT={tmp}",
                f"MCPU={mcpu}",
                f"ARM_CC={cc}",
            ],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            errors = [ln for ln in r.stderr.splitlines() if "error" in ln] or r.stderr.splitlines()[-5:]
            raise ExportError(f"building the boot stage failed: {' | '.join(errors[:5])}")
        digest = hashlib.sha256((tmp / "boot.elf").read_bytes()).hexdigest()
        (tmp / BUILD_RECORD).write_text(json.dumps({"boot.elf": digest}) + "\n")
        try:
            tmp.rename(out)
        except OSError:  # built concurrently: keep theirs
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return elf
