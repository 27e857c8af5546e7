"""``prune --executor``: the flags are offered without importing Ray or torch, and checked before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools.cli import main

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
