"""The frame protocol of ``firmware_stub/frame.h`` in Python: the same bytes, both directions.

A frame is ``magic(A5 5A) type code seq:u32 aux:u32 len:u16 payload(len bytes of float32) crc:u32``,
little-endian, CRC-32 (zlib's) over everything after the magic and before the CRC. The parser
resynchronises like the C one: a rejected candidate frame is dropped one byte at a time, so a good
frame hidden inside a bad one is found again. See ``firmware_stub/PROTOCOL.md``.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "PROTOCOL_VERSION",
    "MAGIC",
    "HEADER_BYTES",
    "CRC_BYTES",
    "MAX_PAYLOAD",
    "MAX_FLOATS",
    "MAX_FRAME",
    "OBS",
    "ACTION",
    "ERROR",
    "HELLO",
    "STATS",
    "PART",
    "E_CRC",
    "E_OVERSIZED",
    "E_BAD_LENGTH",
    "E_WRONG_SIZE",
    "E_TRUNCATED",
    "E_OUT_OF_ORDER",
    "E_NONFINITE",
    "E_DEADLINE",
    "E_INFERENCE",
    "E_BAD_TYPE",
    "E_BAD_PART",
    "ERROR_NAMES",
    "STATS_FIELDS",
    "Frame",
    "FrameError",
    "FrameParser",
    "encode",
    "encode_raw",
    "encode_request",
    "part_aux",
    "MAX_PARTS",
    "MAX_REQUEST_FLOATS",
    "SUPPORTED_VERSIONS",
]

PROTOCOL_VERSION = 2  # 2: multi-part requests (PART frames); version 1 devices take single frames only
SUPPORTED_VERSIONS = (1, 2)  # device versions this host speaks to
MAGIC = b"\xa5\x5a"
HEADER = struct.Struct("<2sBBIIH")  # magic, type, code, seq, aux, len
HEADER_BYTES = HEADER.size  # 14
CRC_BYTES = 4
MAX_PAYLOAD = 256
MAX_FLOATS = MAX_PAYLOAD // 4
MAX_FRAME = HEADER_BYTES + MAX_PAYLOAD + CRC_BYTES
MAX_PARTS = 0xFFFF  # the part count is a u16 in aux's high half
MAX_REQUEST_FLOATS = 16384  # the largest observation the Linux stub takes (stub.cc kMaxObsFloats): 256 parts

# Frame types
OBS, ACTION, ERROR, HELLO, STATS, PART = 0x01, 0x02, 0x03, 0x04, 0x05, 0x06

# Error codes (the code byte of an ERROR frame, and what the parser reports)
E_CRC, E_OVERSIZED, E_BAD_LENGTH, E_WRONG_SIZE, E_TRUNCATED = 1, 2, 3, 4, 5
E_OUT_OF_ORDER, E_NONFINITE, E_DEADLINE, E_INFERENCE, E_BAD_TYPE, E_BAD_PART = 6, 7, 8, 9, 10, 11
ERROR_NAMES = {
    E_CRC: "crc",
    E_OVERSIZED: "oversized",
    E_BAD_LENGTH: "bad_length",
    E_WRONG_SIZE: "wrong_size",
    E_TRUNCATED: "truncated",
    E_OUT_OF_ORDER: "out_of_order",
    E_NONFINITE: "nonfinite",
    E_DEADLINE: "deadline",
    E_INFERENCE: "inference",
    E_BAD_TYPE: "bad_type",
    E_BAD_PART: "bad_part",
}
# Counters of a STATS reply, in payload order
STATS_FIELDS = ("frames_ok", "crc_errors", "resyncs", "skipped_bytes", "actions", "errors", "deadline_misses")


@dataclass
class Frame:
    """A decoded frame (payload as float32)."""

    type: int
    seq: int
    payload: np.ndarray
    code: int = 0
    aux: int = 0

    @property
    def error_name(self) -> str:
        """The error code's name for an ERROR frame, else empty."""
        return ERROR_NAMES.get(self.code, f"code {self.code}") if self.type == ERROR else ""


@dataclass
class FrameError:
    """A candidate frame the parser rejected; header fields as far as they were read (untrusted)."""

    code: int
    seq: int = 0
    type: int = 0

    @property
    def name(self) -> str:
        """The rejection's name (crc, oversized, bad_length, truncated)."""
        return ERROR_NAMES.get(self.code, f"code {self.code}")


def encode(type: int, seq: int, payload=(), code: int = 0, aux: int = 0) -> bytes:
    """The bytes of one frame; payload is a sequence of floats sent as float32."""
    data = np.asarray(payload, dtype="<f4").reshape(-1).tobytes()
    if len(data) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(data) // 4} floats exceeds the protocol's {MAX_FLOATS}")
    body = HEADER.pack(MAGIC, type, code, seq & 0xFFFFFFFF, aux & 0xFFFFFFFF, len(data))[2:] + data
    return MAGIC + body + struct.pack("<I", zlib.crc32(body))


def part_aux(index: int, count: int) -> int:
    """The aux field of a PART frame: part index in the low 16 bits, part count in the high 16."""
    return (index & 0xFFFF) | ((count & 0xFFFF) << 16)


def encode_request(seq: int, payload) -> bytes:
    """One observation: an OBS frame if it fits in one, else PART frames (all with ``seq``), concatenated."""
    data = np.asarray(payload, dtype=np.float32).reshape(-1)
    if len(data) <= MAX_FLOATS:
        return encode(OBS, seq, data)
    count = -(-len(data) // MAX_FLOATS)
    if count > MAX_PARTS:
        raise ValueError(
            f"an observation of {len(data)} floats needs {count} parts, more than the protocol's {MAX_PARTS}"
        )
    return b"".join(
        encode(PART, seq, data[i * MAX_FLOATS : (i + 1) * MAX_FLOATS], aux=part_aux(i, count)) for i in range(count)
    )


def encode_raw(
    type: int, seq: int, payload: bytes, code: int = 0, aux: int = 0, length: int | None = None, crc: int | None = None
) -> bytes:
    """A frame with any payload bytes, declared length or CRC: for tests and the fuzzer to send bad frames."""
    length = len(payload) if length is None else length
    body = HEADER.pack(MAGIC, type, code, seq & 0xFFFFFFFF, aux & 0xFFFFFFFF, length & 0xFFFF)[2:] + payload
    return MAGIC + body + struct.pack("<I", zlib.crc32(body) if crc is None else crc)


@dataclass
class FrameParser:
    """Streaming reader: ``feed(bytes)`` returns the frames and rejections found, in order."""

    buf: bytearray = field(default_factory=bytearray)
    frames_ok: int = 0
    crc_errors: int = 0
    resyncs: int = 0
    skipped_bytes: int = 0

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Take received bytes; return the frames and rejections they complete, in order."""
        self.buf += data
        out: list[Frame | FrameError] = []
        while True:
            item = self._next()
            if item is None:
                return out
            out.append(item)

    @property
    def pending(self) -> bool:
        """The buffer holds the start of a frame still waiting for bytes."""
        return bool(self.buf)

    def truncate(self) -> FrameError | None:
        """The stream stalled or ended inside a frame: reject it and rescan past its magic."""
        if not self.buf:
            return None
        err = FrameError(E_TRUNCATED, *self._header_fields())
        self._reject()
        return err

    def _header_fields(self) -> tuple[int, int]:
        b = self.buf
        seq = struct.unpack_from("<I", b, 4)[0] if len(b) >= 8 else 0
        return seq, (b[2] if len(b) > 2 else 0)

    def _reject(self) -> None:
        del self.buf[:1]
        self.resyncs += 1

    def _next(self) -> Frame | FrameError | None:
        b = self.buf
        i = 0
        while i < len(b) and not (b[i] == 0xA5 and (i + 1 == len(b) or b[i + 1] == 0x5A)):
            i += 1
        if i:
            del b[:i]
            self.skipped_bytes += i
        if len(b) < HEADER_BYTES:
            return None
        _, type_, code, seq, aux, length = HEADER.unpack_from(b, 0)
        if length > MAX_PAYLOAD:
            self._reject()
            return FrameError(E_OVERSIZED, seq, type_)
        if length % 4:
            self._reject()
            return FrameError(E_BAD_LENGTH, seq, type_)
        total = HEADER_BYTES + length + CRC_BYTES
        if len(b) < total:
            return None
        (want,) = struct.unpack_from("<I", b, HEADER_BYTES + length)
        if zlib.crc32(bytes(b[2 : HEADER_BYTES + length])) != want:
            self.crc_errors += 1
            self._reject()
            return FrameError(E_CRC, seq, type_)
        payload = np.frombuffer(bytes(b[HEADER_BYTES : HEADER_BYTES + length]), dtype="<f4").astype(np.float32)
        del b[:total]
        self.frames_ok += 1
        return Frame(type_, seq, payload, code, aux)
