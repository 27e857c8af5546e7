"""The C reader (firmware_stub/frame.c) and the Python reader see the same events in the same bytes."""

import subprocess

import numpy as np

from export import frames
from tools.dev.fuzz_frames import build_frame_dump, python_events


def c_events(data: bytes) -> list[str]:
    r = subprocess.run([str(build_frame_dump())], input=data, capture_output=True, check=True, timeout=30)
    return r.stdout.decode().splitlines()


def mutated_stream(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(150):
        kind = rng.integers(0, 6)
        f = frames.encode(
            int(rng.integers(1, 6)),
            int(rng.integers(0, 2**32)),
            rng.normal(size=int(rng.integers(0, 65))).astype(np.float32),
            aux=int(rng.integers(0, 2**32)),
        )
        if kind == 0:
            f = f[: int(rng.integers(1, len(f)))]  # cut short
        elif kind == 1:
            b = bytearray(f)
            b[int(rng.integers(0, len(b)))] ^= int(rng.integers(1, 256))  # one flipped byte
            f = bytes(b)
        elif kind == 2:
            f = bytes(rng.integers(0, 256, int(rng.integers(1, 80)), dtype=np.uint8))  # garbage
        parts.append(f)
    return b"".join(parts)


def test_same_events_on_good_frames():
    data = b"".join(frames.encode(frames.OBS, i, [i, -i, 0.5]) for i in range(20))
    events = c_events(data)
    assert len(events) == 20 and all(e.startswith("F 1 0 ") for e in events)
    assert events == python_events(data)


def test_same_events_on_seeded_corrupted_streams():
    for seed in range(6):
        data = mutated_stream(seed)
        c, py = c_events(data), python_events(data)
        assert any(e.startswith("E ") for e in c) and any(e.startswith("F ") for e in c)
        assert c == py, (
            f"seed {seed}: first difference at event {next(i for i, (a, b) in enumerate(zip(c, py)) if a != b) if len(c) == len(py) else 'count'}"
        )
