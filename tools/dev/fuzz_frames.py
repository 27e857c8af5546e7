"""Fuzz the C frame reader and the device's frame handler with libFuzzer (``firmware_stub/fuzz_frames.c``), under ASan and UBSan.

``python -m tools.dev.fuzz_frames --seconds 300 --seed 1`` builds the target with clang into the cache,
seeds a corpus with frames made by the Python codec (good, corrupted, truncated, glued together),
runs, and prints one JSON line; exit 1 if libFuzzer found a crash (the reproducer's path is printed).
Needs clang with libFuzzer (Debian: ``apt-get install clang libclang-rt-14-dev``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from export import STUB_SOURCES, cache_root, frames
from tools.errors import ToolsError

SOURCES = ("fuzz_frames.c", "frame.c", "frame.h", "frame_handler.c", "frame_handler.h")


@dataclass
class FuzzResult:
    """One libFuzzer run."""

    ok: bool
    runs: int
    seconds: float
    seed: int
    corpus_files: int
    crash_file: str
    command: list[str]


def build_fuzzer() -> Path:
    """Compile the libFuzzer target (clang, ASan + UBSan) into the cache; reused while the sources are unchanged."""
    clang = shutil.which("clang")
    if clang is None:
        raise ToolsError("clang not found on PATH (Debian: apt-get install clang libclang-rt-14-dev)")
    digest = hashlib.sha256(b"".join((STUB_SOURCES / n).read_bytes() for n in SOURCES)).hexdigest()[:12]
    exe = cache_root() / "fuzz" / f"fuzz_frames-{digest}"
    if exe.exists():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_name(exe.name + ".tmp")
    cmd = [
        clang,
        "-g",
        "-O1",
        "-fsanitize=fuzzer,address,undefined",
        "-fno-sanitize-recover=undefined",
        str(STUB_SOURCES / "fuzz_frames.c"),
        str(STUB_SOURCES / "frame.c"),
        str(STUB_SOURCES / "frame_handler.c"),
        "-o",
        str(tmp),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise ToolsError(f"building the frame fuzzer failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
    tmp.replace(exe)
    return exe


def build_frame_dump() -> Path:
    """Compile ``firmware_stub/frame_dump.c`` (prints the C reader's events) with the host C compiler, cached."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ToolsError("no C compiler (cc/gcc) on PATH")
    names = ("frame_dump.c", "frame.c", "frame.h")
    digest = hashlib.sha256(b"".join((STUB_SOURCES / n).read_bytes() for n in names)).hexdigest()[:12]
    exe = cache_root() / "fuzz" / f"frame_dump-{digest}"
    if not exe.exists():
        exe.parent.mkdir(parents=True, exist_ok=True)
        tmp = exe.with_name(exe.name + f".tmp{os.getpid()}")
        r = subprocess.run(
            [cc, "-O2", "-std=c11", str(STUB_SOURCES / "frame_dump.c"), str(STUB_SOURCES / "frame.c"), "-o", str(tmp)],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise ToolsError(f"building frame_dump failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        tmp.replace(exe)
    return exe


def python_events(data: bytes) -> list[str]:
    """The Python reader's events for ``data``, fed and stalled exactly as frame_dump.c does."""
    import zlib

    parser = frames.FrameParser()
    lines: list[str] = []

    def report(items) -> None:
        for it in items:
            if isinstance(it, frames.Frame):
                raw = it.payload.astype("<f4").tobytes()
                lines.append(f"F {it.type} {it.code} {it.seq} {it.aux} {len(raw)} {zlib.crc32(raw)}")
            else:
                lines.append(f"E {it.code} {it.seq}")

    i = 0
    while i < len(data):
        chunk = min(1 + data[i] % 61, len(data) - i)
        report(parser.feed(data[i : i + chunk]))
        i += chunk
        if data[i - 1] == 0xEE:
            err = parser.truncate()
            if err:
                report([err])
            report(parser.feed(b""))
    while parser.pending:
        report([parser.truncate()])
        report(parser.feed(b""))
    return lines


def seed_corpus(folder: Path, seed: int) -> int:
    """Write starting inputs made by the Python codec: the fuzzer then mutates real frames."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    good = [
        frames.encode(t, int(rng.integers(0, 2**32)), rng.normal(size=n).astype(np.float32))
        for t in (frames.OBS, frames.ACTION, frames.ERROR, frames.HELLO, frames.STATS)
        for n in (0, 1, 3, 64)
    ]
    samples = list(good)
    samples.append(b"".join(good))
    samples.append(good[2][:-1] + good[3])  # a short frame glued to the next one
    samples.append(frames.encode_raw(frames.OBS, 1, b"\0" * 12, crc=0))  # bad CRC
    samples.append(frames.encode_raw(frames.OBS, 1, b"", length=1000))  # oversized
    samples.append(frames.encode_raw(frames.OBS, 1, b"\0" * 3))  # length not a multiple of 4
    samples.append(bytes(rng.integers(0, 256, 300, dtype=np.uint8)) + good[2])  # garbage, then a frame
    # multi-part requests for the fuzzer's 70-float controller: whole, a part missing, parts swapped, too long
    parts = [frames.encode(frames.PART, 9, np.ones(n), aux=frames.part_aux(i, 2)) for i, n in enumerate((64, 6))]
    samples += [parts[0] + parts[1], parts[1] + parts[0], parts[0] + good[2] + parts[1]]
    samples.append(frames.encode_request(10, rng.normal(size=140)))
    for i, s in enumerate(samples):
        (folder / f"seed-{i:03d}").write_bytes(s)
    return len(samples)


def run_fuzzer(seconds: float, seed: int = 0, runs: int | None = None, workdir: Path | None = None) -> FuzzResult:
    """Fuzz for ``seconds`` (or ``runs`` inputs); the result says whether a crash was found."""
    exe = build_fuzzer()
    own = workdir is None
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="pae_fuzz."))
    try:
        corpus = work / "corpus"
        seed_corpus(corpus, seed)
        dictionary = work / "frames.dict"
        dictionary.write_text('magic="\\xa5\\x5a"\nobs="\\xa5\\x5a\\x01"\npart="\\xa5\\x5a\\x06"\nlen12="\\x0c\\x00"\n')
        cmd = [
            str(exe),
            f"-seed={seed}",
            f"-max_total_time={max(1, int(seconds))}",
            "-max_len=2048",
            f"-dict={dictionary}",
            f"-artifact_prefix={work}/",
            "-print_final_stats=1",
            str(corpus),
        ]
        if runs is not None:
            cmd.insert(1, f"-runs={runs}")
        start = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        elapsed = time.perf_counter() - start
        m = re.search(r"stat::number_of_executed_units:\s*(\d+)", r.stderr)
        crashes = sorted(str(p) for p in work.glob("crash-*")) + sorted(str(p) for p in work.glob("leak-*"))
        crash = crashes[0] if crashes else ""
        if crash and own:  # keep the reproducer where the user can find it
            keep = cache_root() / "fuzz" / "crashes"
            keep.mkdir(parents=True, exist_ok=True)
            crash = str(shutil.copy2(crash, keep / Path(crash).name))
        ok = r.returncode == 0 and not crash
        return FuzzResult(
            ok,
            int(m.group(1)) if m else 0,
            elapsed,
            seed,
            len(list(corpus.iterdir())),
            crash,
            [Path(cmd[0]).name, *cmd[1:]],
        )
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.dev.fuzz_frames", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300.0, help="fuzzing time (default 300)")
    p.add_argument("--seed", type=int, default=0, help="libFuzzer seed and corpus seed (default 0)")
    args = p.parse_args(argv)
    print(f"fuzzing the frame reader and handler for {args.seconds:g} s, seed {args.seed}", file=sys.stderr)
    result = run_fuzzer(args.seconds, args.seed)
    print(json.dumps(asdict(result)))
    if not result.ok:
        print(f"libFuzzer found a failing input: {result.crash_file or '(see its output)'}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
