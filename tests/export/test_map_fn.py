"""export_bundle's map_fn: the Linux targets' compiles run wherever the caller's map runs them, same bundle bytes."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from export import export_bundle
from targets import parse_target_list

TARGETS = "x86_64,cortex-a72"


def with_pid(fn, job):
    """``fn(job)`` and the id of the process that ran it."""
    return fn(job), os.getpid()


def test_compiles_in_other_processes_give_the_same_bundle_bytes(small_controller, pendulum, tmp_path):
    torch.set_num_threads(1)
    targets = parse_target_list(TARGETS)
    here = export_bundle(small_controller, pendulum, targets, tmp_path / "here", n_parity=50)
    pids: list[int] = []
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:

        def pool_map(fn, jobs):
            jobs = list(jobs)
            assert len(jobs) == 2  # one self-contained job per Linux target
            out = list(pool.map(functools.partial(with_pid, fn), jobs))
            pids.extend(pid for _, pid in out)
            return [result for result, _ in out]

        there = export_bundle(small_controller, pendulum, targets, tmp_path / "there", n_parity=50, map_fn=pool_map)
    assert pids and os.getpid() not in pids  # the compiles ran in the pool's processes
    files = sorted(p.name for p in (tmp_path / "here").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "there").iterdir())
    assert {"x86_64.so", "cortex-a72.so", "model.onnx"} <= set(files)
    for name in files:
        if name != "manifest.json":  # it records compile times and the creation time
            assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "there" / name).read_bytes(), name
            assert (tmp_path / "here" / name).stat().st_mode == (tmp_path / "there" / name).stat().st_mode, name
    for t in ("x86_64", "cortex-a72"):
        a, b = here.artifacts[t], there.artifacts[t]
        assert (a["sha256"], a["bytes"], a["kernels"]) == (b["sha256"], b["bytes"], b["kernels"])
        assert a["verification"]["status"] == b["verification"]["status"] == "verified"
    assert (
        json.loads(Path(tmp_path / "there" / "manifest.json").read_text())["artifacts"]["x86_64"]["sha256"]
        == (here.artifacts["x86_64"]["sha256"])
    )
