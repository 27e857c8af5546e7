"""A session with a device that speaks the frame protocol (``firmware_stub/PROTOCOL.md``).

:class:`DeviceSession` is what the Linux stub (:mod:`export.stub`) and the microcontroller firmware
(:mod:`export.mcu.session`) have in common once their device is running: frames out on its stdin,
frames in from its stdout, a window of observations in flight, the protocol counters. How the
device starts and stops, and how its failures are named, is each subclass's own.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

import export.frames as frames
from export.errors import ExportError


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
class DeviceSession:
    """A device running one bundle for one target, spoken to in frames over a pipe pair.

    Use as a context manager. The subclasses start the device: :class:`export.stub.StubSession` (the
    Linux stub), :class:`export.mcu.session.FirmwareSession` (the firmware under qemu-system-arm);
    this class holds what they share: sending, receiving, batches, requests, counters.
    ``extra_args`` are the device's options (``--deadline-us``, ``--safe-action``...).
    """

    bundle_dir: Path
    target_name: str
    extra_args: tuple[str, ...] = ()
    runner: str | None = None  # None: the target's own runner (native, or qemu for another arch)
    timeout: float = 60.0  # seconds to wait for one reply (qemu start-up included)
    parser: frames.FrameParser = field(default_factory=frames.FrameParser)
    public_key: Path | None = None  # a public key file: the device refuses bundles not signed with its private key
    WINDOW = 64  # OBS frames in flight in infer_batch: keeps both pipe buffers far from full

    def __post_init__(self) -> None:
        self.bundle_dir = Path(self.bundle_dir)
        self.seq = 0
        self.obs_dim = self.act_dim = 0
        self.version = 0  # the device's protocol version, from its HELLO reply
        self._pending: list = []
        self._stack = contextlib.ExitStack()  # what the subclass's start-up opened, closed on exit
        self.proc: Any = None  # the device's process, once started
        self._stderr: IO[bytes] | None = None  # its stderr, a temporary file

    def __enter__(self) -> DeviceSession:
        raise NotImplementedError(f"{type(self).__name__} does not say how its device starts")

    def __exit__(self, *exc) -> None:
        self._stack.close()

    @property
    def where(self) -> str:
        """The device and how it runs, for messages."""
        return f"device for {self.target_name!r}"

    def _failed(self, what: str) -> StubFailed:
        """The error to raise once the device stopped answering (``what`` says how that showed)."""
        tail = self.stderr_tail()
        return StubFailed(f"{self.where}: {what}{': ' + tail if tail else ''}")

    def _check_hello(self, hello: frames.Frame) -> None:
        """Take the controller's sizes from the HELLO reply; a protocol version this host does not speak is refused."""
        version, self.obs_dim, self.act_dim = (int(v) for v in hello.payload[:3])
        if version not in frames.SUPPORTED_VERSIONS:
            raise StubFailed(f"{self.where}: protocol version {version}, this host speaks {frames.SUPPORTED_VERSIONS}")
        if version < 2 and self.obs_dim > frames.MAX_FLOATS:
            raise StubFailed(f"{self.where}: obs_dim {self.obs_dim} needs multi-part requests (protocol version 2)")
        self.version = version

    def stderr_tail(self) -> str:
        """The last line the device wrote to stderr (empty if none)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""

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
        """The next frame sequence number (wrapping at 2**32)."""
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        return self.seq

    def infer_batch(self, observations: np.ndarray, window: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Actions for each observation row, and each reply's ``aux`` (the device's inference time).

        Keeps up to ``window`` requests in flight (the class's ``WINDOW`` frames' worth unless given; an
        observation of more than one frame is a multi-part request). Any ERROR reply raises, naming the
        row and the error.
        """
        obs = np.asarray(observations, dtype=np.float32)
        parts = -(-obs.shape[-1] // frames.MAX_FLOATS) if obs.ndim == 2 and obs.shape[-1] else 1
        window = window or max(1, self.WINDOW // parts)
        out = np.empty((len(obs), self.act_dim), dtype=np.float32)
        aux = np.empty(len(obs), dtype=np.int64)
        first = self.seq + 1
        sent = received = 0
        while received < len(obs):
            while sent < len(obs) and sent - received < window:
                self.send(frames.encode_request(self.next_seq(), obs[sent]))
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
                raise StubFailed(
                    f"{self.where}: expected the action for row {received}, got type {item.type} seq {item.seq}"
                )
            out[row] = item.payload
            aux[row] = item.aux
            received += 1
        return out, aux

    def request(self, type_: int, payload) -> frames.Frame:
        """Send one frame (an OBS too large for one: its parts) and wait for the reply with the same seq (other replies are dropped)."""
        seq = self.next_seq()
        self.send(frames.encode_request(seq, payload) if type_ == frames.OBS else frames.encode(type_, seq, payload))
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
