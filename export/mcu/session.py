"""The firmware of a microcontroller bundle, running under ``qemu-system-arm``, spoken to in frames.

The image's UART0 is qemu's ``-serial stdio``: the frames go through qemu's stdin/stdout pipes,
the same bytes a real board would see on its serial line. Semihosting is on only so that a fault
stops qemu with exit status 1 (``firmware_stub/mcu/startup.c``) instead of hanging.
:class:`FirmwareSession` is a :class:`export.session.DeviceSession` like the Linux stub's session
(same ``infer``, ``stats``, ``request``), started differently.

The image is linked behind a boot stage (:mod:`export.mcu.boot`): qemu loads the boot stage at 0x0
(with the public key built in when the session has one, else without), the bundle's image at 0x10000
and, for a signed bundle, its boot record at 0xFF80. With a key, the boot stage refuses an image
whose signature does not check (qemu exits with status 6) before any of it runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import export.frames as frames
from export.bundle import read_manifest
from export.errors import ExportError
from export.keys import read_public_key
from export.mcu.boot import EXIT_SIGNATURE_REFUSED, RECORD_ADDR, build_boot_stage
from export.scratch import scratch
from export.session import DeviceSession, StubFailed
from targets import Target, get_target

QEMU = "qemu-system-arm"
HELLO_RETRY_S = 0.5  # the UART drops bytes until the firmware enables it: HELLO is repeated until answered
START_TIMEOUT_S = 30.0
EXTRA_STATS = ("arena_peak_bytes", "stack_peak_bytes")  # appended by the firmware after the 7 protocol counters


def qemu_available(target: Target) -> str:
    """Empty if this machine can run the target's firmware, else why not."""
    if not target.qemu_machine:
        return f"target {target.name!r} names no qemu_machine"
    if shutil.which(QEMU) is None:
        return f"{QEMU} not found on PATH (Debian: apt-get install qemu-system-arm)"
    return ""


def qemu_command(machine: str, boot: Path, elf: Path, record: Path | None = None) -> list[str]:
    """argv running the boot stage ``boot`` then the image ``elf`` on ``machine``, UART0 on stdin/stdout.

    ``record``: the signed bundle's boot record, loaded at RECORD_ADDR for the boot stage to check.

    ``-icount shift=0``: qemu's virtual clock advances exactly 1 ns per executed instruction, so the
    firmware's SysTick-timed ``aux`` is the instruction count of each inference (deterministic; not
    cycles: qemu models no pipeline, memory wait states or FPU latencies).
    """
    return [
        QEMU,
        "-machine",
        machine,
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0",
        "-kernel",
        str(boot),
        "-device",
        f"loader,file={elf}",
        *(["-device", f"loader,file={record},addr={RECORD_ADDR:#x},force-raw=on"] if record else []),
    ]


class FirmwareSession(DeviceSession):
    """The bundle's firmware for an ``mcu`` target under qemu-system-arm (context manager).

    ``infer_batch`` (inherited) returns each inference's instruction count as ``aux`` (see qemu_command).
    """

    WINDOW = 8  # OBS frames in flight: the board's UART receive buffer is small

    def __enter__(self) -> FirmwareSession:
        target = get_target(self.target_name)
        if target.kind != "mcu":
            raise ExportError(f"target {self.target_name!r} is not a microcontroller target")
        if self.extra_args:
            raise ExportError(
                f"target {self.target_name!r}: the firmware takes no options "
                f"({' '.join(self.extra_args)}): deadlines and safe actions need the Linux stub"
            )
        if self.runner not in (None, "auto", "qemu"):
            raise ExportError(f"target {self.target_name!r}: firmware runs only under qemu here, not {self.runner!r}")
        why_not = qemu_available(target)
        if why_not:
            raise ExportError(why_not)
        self._describe = f"{QEMU} -M {target.qemu_machine} -icount shift=0 (1 ns = 1 instruction)"
        try:
            tmp = self._stack.enter_context(scratch("pae_fw."))
            elf = tmp / "firmware.elf"
            elf.write_bytes(self._verified_image())  # run the bytes that were hashed, not the path again
            boot, record = self._boot_stage(target, tmp)
            self._stderr = self._stack.enter_context(tempfile.TemporaryFile())
            self.proc = subprocess.Popen(
                qemu_command(target.qemu_machine, boot, elf, record),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                bufsize=0,
            )
            self._stack.callback(self._stop)
            self._check_hello(self._hello())
        except BaseException:
            self._stack.close()
            raise
        return self

    def _boot_stage(self, target: Target, tmp: Path) -> tuple[Path, Path | None]:
        """The boot stage for this session's key (none: unchecked) and, with a key, the bundle's boot record."""
        if self.public_key is None:
            return build_boot_stage(None, str(target.tvm.get("mcpu", "cortex-m4"))), None
        boot = build_boot_stage(read_public_key(self.public_key), str(target.tvm.get("mcpu", "cortex-m4")))
        rec = read_manifest(self.bundle_dir).artifacts.get(self.target_name) or {}
        name = str((rec.get("boot_record") or {}).get("file", ""))
        if not name or Path(name).name != name or not (self.bundle_dir / name).is_file():
            return boot, None  # unsigned: the boot stage finds no record and refuses
        record = tmp / "boot_record.bin"
        record.write_bytes((self.bundle_dir / name).read_bytes())
        return boot, record

    def _verified_image(self) -> bytes:
        rec = read_manifest(self.bundle_dir).artifacts.get(self.target_name)
        if not isinstance(rec, dict) or rec.get("kind") != "mcu":
            raise ExportError(
                f"{self.bundle_dir}/manifest.json: no firmware for target {self.target_name!r} "
                "(export the bundle with this target)"
            )
        path = self.bundle_dir / str(rec["file"])
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ExportError(f"{path}: cannot read the firmware ({e})") from e
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != rec.get("bytes") or digest != rec.get("sha256"):
            raise ExportError(
                f"{path}: {len(data)} bytes, sha256 {digest[:12]}...; the manifest says "
                f"{rec.get('bytes')} bytes, {str(rec.get('sha256'))[:12]}...: refusing to run it"
            )
        return data

    def _hello(self) -> frames.Frame:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            seq = self.next_seq()
            self.send(frames.encode(frames.HELLO, seq, []))
            item = self.receive(timeout=HELLO_RETRY_S)
            while item is not None:
                if isinstance(item, frames.Frame) and item.type == frames.HELLO:
                    self._pending.clear()  # answers to earlier HELLOs that were slow, not lost
                    return item
                item = self.receive(timeout=0.05)
        raise self._failed(f"no HELLO reply within {START_TIMEOUT_S:g} s")

    @property
    def where(self) -> str:
        """The emulator and machine, for messages."""
        return f"firmware under {getattr(self, '_describe', QEMU)}"

    def _stop(self) -> None:
        # The firmware never exits on its own (a board does not): stop the emulator.
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()

    def _failed(self, what: str) -> StubFailed:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        if code == 1:
            why = "the firmware faulted (semihosting exit 1)"
        elif code == EXIT_SIGNATURE_REFUSED:
            why = (
                f"signature refused: the boot stage found no valid signature of the image for "
                f"{self.public_key} (exit {code}); nothing of the image ran"
            )
        elif code is not None:
            why = f"{QEMU} exited with status {code}"
        else:
            why = what
        tail = self.stderr_tail()
        return StubFailed(f"target {self.target_name!r}, {self.where}: {why}{': ' + tail if tail else ''}")

    def stats_extended(self) -> dict[str, int]:
        """The protocol counters plus the firmware's arena_peak_bytes and stack_peak_bytes."""
        f = self.request(frames.STATS, [])
        names = tuple(frames.STATS_FIELDS) + EXTRA_STATS
        return {k: int(v) for k, v in zip(names, f.payload)}
