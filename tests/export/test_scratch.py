"""Temporary folders of a killed run are removed by the next run; a live run's are left alone."""

from __future__ import annotations

import os
import subprocess

from export import export_bundle
from export.scratch import remove_stale, scratch, scratch_dir
from targets import parse_target_list


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_dead_runs_folder_is_removed_and_a_live_ones_kept(tmp_path):
    dead = tmp_path / f".b.tmp-{dead_pid()}-abc"
    live = tmp_path / f".b.tmp-{os.getppid()}-def"
    other = tmp_path / "b"
    for d in (dead, live, other):
        d.mkdir()
    (dead / "half.so").write_bytes(b"half written")
    new = scratch_dir(tmp_path, ".b.tmp-")
    assert not dead.exists() and live.exists() and other.exists()
    assert new.name.startswith(f".b.tmp-{os.getpid()}-")
    assert remove_stale(tmp_path, ".b.tmp-") == []  # this process's own folder is never removed


def test_scratch_is_removed_on_exit():
    with scratch("pae_test.") as d:
        assert d.is_dir()
    assert not d.exists()


def test_export_removes_a_killed_exports_leftovers(make_mlp, pendulum, tmp_path):
    pid = dead_pid()
    leftovers = [tmp_path / f".bundle.tmp-{pid}-x1", tmp_path / f".bundle.mcu-work-{pid}-x1"]
    for d in leftovers:
        d.mkdir()
    export_bundle(make_mlp([8]), pendulum, parse_target_list("x86_64"), tmp_path / "bundle", n_parity=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
