"""Signed Cortex-M firmware under qemu-system-arm: the boot stage starts only an image its key signed.

The replacement image writes a file on the host through semihosting as its first act (the
firmware's counterpart of a library constructor): if any of it ran, the file would exist.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from export import ExportError, StubFailed, export_bundle
from export.mcu.boot import APP_BASE, boot_record, flash_image, signed_message
from export.mcu.session import FirmwareSession
from export.signing import SignatureRefused, generate_keypair, load_private_key, sign_bundle, verify_bundle_signature
from targets import parse_target_list

TARGET = "cortex-m4"
EVIL_C = r"""
#include <stdint.h>
static uint32_t semihost(uint32_t op, const void* arg) {
    register uint32_t r0 __asm__("r0") = op;
    register uint32_t r1 __asm__("r1") = (uint32_t)arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
void evil_reset(void) {
    static const char path[] = MARKER;
    uint32_t open_args[3] = {(uint32_t)path, 4 /* "w" */, sizeof path - 1};
    uint32_t fd = semihost(0x01 /* SYS_OPEN */, open_args);
    semihost(0x02 /* SYS_CLOSE */, &fd);
    semihost(0x18 /* SYS_EXIT */, (const void*)0x20026u);
    for (;;) {}
}
__attribute__((section(".isr_vector"), used)) static void (*const vectors[2])(void) = {
    (void (*)(void))0x20010000u, evil_reset};
"""
EVIL_LD = f"""
MEMORY {{ FLASH (rx) : ORIGIN = {APP_BASE:#x}, LENGTH = 64K  RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 64K }}
ENTRY(evil_reset)
SECTIONS {{ .isr_vector : {{ KEEP(*(.isr_vector)) }} > FLASH  .text : {{ *(.text*) *(.rodata*) }} > FLASH }}
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    generate_keypair(d / "k.pem", d / "k.pub")
    generate_keypair(d / "other.pem", d / "other.pub")
    return {"private": d / "k.pem", "public": d / "k.pub", "other": d / "other.pub"}


@pytest.fixture(scope="module")
def signed_mcu(small_controller, pendulum, keys, tmp_path_factory) -> Path:
    """The small controller exported for cortex-m4 and signed at export."""
    out = tmp_path_factory.mktemp("mcu") / "bundle"
    export_bundle(small_controller, pendulum, parse_target_list(TARGET), out, n_parity=20, sign=keys["private"])
    return out


@pytest.fixture
def mcu_copy(signed_mcu, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(signed_mcu, tmp_path / "bundle"))


def evil_image(marker: Path, out: Path) -> Path:
    """A Cortex-M image at APP_BASE whose reset handler creates ``marker`` on the host (semihosting)."""
    (out.parent / "evil.c").write_text(EVIL_C)
    (out.parent / "evil.ld").write_text(EVIL_LD)
    subprocess.run(
        [
            "arm-none-eabi-gcc",
            "-mcpu=cortex-m4",
            "-mthumb",
            "-Os",
            "-nostdlib",
            "-nostartfiles",
            f'-DMARKER="{marker}"',
            "-T",
            str(out.parent / "evil.ld"),
            str(out.parent / "evil.c"),
            "-o",
            str(out),
        ],
        check=True,
    )
    return out


def replace_image(bundle: Path, new: Path) -> None:
    """Put ``new`` in place of the firmware and re-hash the manifest (as an attacker would)."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    record = manifest["artifacts"][TARGET]
    data = new.read_bytes()
    (bundle / record["file"]).write_bytes(data)
    record["sha256"], record["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def test_signed_firmware_runs_behind_the_checking_boot_stage(signed_mcu, keys, small_controller, pendulum):
    assert (signed_mcu / f"{TARGET}.boot").stat().st_size == 128
    verify_bundle_signature(signed_mcu, keys["public"])
    obs = pendulum.sample_observations(8, seed=3)
    with FirmwareSession(signed_mcu, TARGET, public_key=keys["public"]) as s:
        got, _ = s.infer_batch(obs)
    np.testing.assert_allclose(got, small_controller(torch.tensor(obs)).detach().numpy(), atol=1e-5)


def test_a_replaced_image_with_a_rehashed_manifest_is_refused_before_it_runs(mcu_copy, keys, tmp_path):
    marker = tmp_path / "image-ran"
    replace_image(mcu_copy, evil_image(marker, tmp_path / "evil.elf"))
    with pytest.raises(StubFailed, match=r"signature refused.*exit 6"):
        with FirmwareSession(mcu_copy, TARGET, public_key=keys["public"]):
            pass
    assert not marker.exists()
    # the control: the same image behind a boot stage without a key does run (and so creates the file)
    with pytest.raises(StubFailed):
        with FirmwareSession(mcu_copy, TARGET):
            pass
    assert marker.exists()


def test_a_one_byte_change_in_the_image_is_refused(mcu_copy, keys, tmp_path):
    elf = bytearray((mcu_copy / f"{TARGET}.elf").read_bytes())
    image = flash_image(bytes(elf))
    offset = bytes(elf).index(image[0x400:0x440])  # somewhere in .text, as loaded into flash
    elf[offset + 3] ^= 0x01
    (tmp_path / "changed.elf").write_bytes(bytes(elf))
    replace_image(mcu_copy, tmp_path / "changed.elf")
    with pytest.raises(StubFailed, match="signature refused"):
        with FirmwareSession(mcu_copy, TARGET, public_key=keys["public"]):
            pass


def test_unsigned_and_wrongly_signed_firmware_is_refused(mcu_copy, keys):
    with pytest.raises(StubFailed, match="signature refused"):
        with FirmwareSession(mcu_copy, TARGET, public_key=keys["other"]):
            pass
    (mcu_copy / f"{TARGET}.boot").unlink()
    with pytest.raises(StubFailed, match="signature refused"):
        with FirmwareSession(mcu_copy, TARGET, public_key=keys["public"]):
            pass


def test_a_spec_field_edit_is_refused_by_the_host_and_changes_nothing_on_the_board(mcu_copy, keys):
    # the firmware reads no manifest: obs/act sizes are in the signed image (HELLO reports them from it)
    path = mcu_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["spec"]["obs_dim"] = 4
    manifest["spec"]["obs_high"][0] = 1000.0
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(SignatureRefused):
        verify_bundle_signature(mcu_copy, keys["public"])
    with FirmwareSession(mcu_copy, TARGET, public_key=keys["public"]) as s:
        assert (s.obs_dim, s.act_dim) == (3, 1)


def test_boot_record_signs_magic_base_length_and_every_image_byte(signed_mcu, keys):
    image = flash_image((signed_mcu / f"{TARGET}.elf").read_bytes())
    record = (signed_mcu / f"{TARGET}.boot").read_bytes()
    key = load_private_key(keys["private"])
    assert record == boot_record(key.sign(signed_message(image)), image)
    assert record[112:120] == b"PAEIMG01" and int.from_bytes(record[124:128], "little") == len(image)


def test_an_image_outside_the_application_flash_is_not_signed(tmp_path):
    elf = bytearray(64 + 32)
    elf[:6] = b"\x7fELF\x01\x01"
    elf[28:32] = (52).to_bytes(4, "little")
    elf[42:46] = (32).to_bytes(2, "little") + (1).to_bytes(2, "little")
    elf[52:72] = b"".join(v.to_bytes(4, "little") for v in (1, 0, 0, 0, 16))  # PT_LOAD of 16 bytes at 0x0
    with pytest.raises(ExportError, match="outside the application's flash"):
        flash_image(bytes(elf))


def test_sign_bundle_then_run(mcu_copy, keys, tmp_path):
    # re-signing with another key replaces the boot record: the old key is refused, the new accepted
    generate_keypair(tmp_path / "n.pem", tmp_path / "n.pub")
    sign_bundle(mcu_copy, tmp_path / "n.pem")
    verify_bundle_signature(mcu_copy, tmp_path / "n.pub")
    with FirmwareSession(mcu_copy, TARGET, public_key=tmp_path / "n.pub") as s:
        assert s.obs_dim == 3
    with pytest.raises(StubFailed, match="signature refused"):
        with FirmwareSession(mcu_copy, TARGET, public_key=keys["public"]):
            pass
