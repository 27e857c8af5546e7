"""``prune --executor``: the flags are offered without importing Ray or torch, and checked before any work."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tools.cli import main
from tools.scale import ScaleError
from tools.scale.cluster import check_reachable

PROBE = """
import sys
from tools.cli import main
try:
    main(["prune", "--help"])
except SystemExit:
    pass
print("HEAVY", sorted({m.split('.')[0] for m in sys.modules} & {"ray", "torch"}))
"""


def test_prune_help_offers_the_executor_without_importing_ray_or_torch():
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert "--executor {local,ray}" in proc.stdout and "--ray-address" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_prune_refuses_a_ray_address_without_the_ray_executor(capsys):
    assert main(["prune", "--ray-address", "auto", "--keep", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("--ray-address auto: only with --executor ray")


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--ray-address", "auto"], "--ray-address auto: only with --farm"),
        (["--farm", "f.toml", "--runner", "qemu"], "each board of a farm names its own runner"),
        (["--farm", "missing.toml"], "farm file missing.toml"),
    ],
)
def test_hil_refuses_a_ray_address_without_a_farm_a_runner_with_one_and_a_missing_farm_file(
    extra, fragment, tmp_path, capsys
):
    assert main(["hil", "--bundle", str(tmp_path), "--target", "x86_64", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nothing_answers_at_is_refused_at_once_naming_it():
    address = f"127.0.0.1:{_closed_port()}"
    with pytest.raises(ScaleError, match=f"Ray at {address} \\(--ray-address or RAY_ADDRESS\\): nothing answers there"):
        check_reachable(address)
    with pytest.raises(ScaleError, match="expected auto, HOST:PORT or ray://HOST:PORT"):
        check_reachable("127.0.0.1")


def test_prune_on_an_unreachable_cluster_is_one_line_and_writes_nothing(tmp_path, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    out = tmp_path / "p.pt"
    argv = ["prune", "--executor", "ray", "--ray-address", address, "--judge-episodes", "0", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"Ray at {address}" in err[0] and "nothing answers there" in err[0], err
    assert not list(tmp_path.iterdir())


def test_run_on_an_unreachable_cluster_is_refused_before_the_evaluation(tmp_path, capsys):
    address = f"127.0.0.1:{_closed_port()}"
    config = tmp_path / "run.toml"
    config.write_text(f'episodes = 1\n[bench]\nexecutor = "ray"\nray-address = "{address}"\n')
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--json"]) == 2
    captured = capsys.readouterr()
    assert "closed-loop return" not in captured.err, captured.err  # no evaluation ran first (tables go to stderr)
    assert captured.err.strip().splitlines()[-1].endswith("start the cluster first (docs/scale.md) or fix the address")
    assert not (tmp_path / "out").exists()
