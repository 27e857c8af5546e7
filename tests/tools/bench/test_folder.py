"""A killed run's temp folder beside its report is removed by the next run; a live run's is never touched."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from export import scratch_in
from tools.bench.folder import temp_dir_for

KILLED = """
import os, signal, sys
from pathlib import Path
from tools.bench.folder import temp_dir_for
tmp = temp_dir_for(Path(sys.argv[1]), False)
(tmp / "report.json").write_text("half written")
print(tmp, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no finally, no atexit: what a kill -9 or a power cut leaves
"""


def test_a_killed_runs_temp_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "report"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = Path(proc.stdout.strip())
    assert left.parent == tmp_path and left.name.startswith(".report.tmp-") and (left / "report.json").is_file()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = tmp_path / f".report.tmp-{live.pid}-abcd"  # a concurrent run's folder
        busy.mkdir()
        mine = temp_dir_for(out, False)
        try:
            assert not left.exists(), "the killed run's folder survived the next run"
            assert busy.is_dir(), "a live run's folder was removed"
            assert mine.name.startswith(f".report.tmp-{os.getpid()}-")
        finally:
            mine.rmdir()
    finally:
        live.kill()
        live.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == [busy.name]


def test_scratch_in_removes_its_folder_and_dead_runs_ones(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    stale = tmp_path / f"bench_stub.{dead.stdout.strip()}-xyz"
    stale.mkdir()
    (stale / "bundle").mkdir()
    unrelated = tmp_path / "bench_stub.notapid"  # not this pattern: left alone
    unrelated.mkdir()
    with scratch_in(tmp_path, "bench_stub.") as d:
        assert d.is_dir() and not stale.exists()
    assert not d.exists() and unrelated.is_dir()
