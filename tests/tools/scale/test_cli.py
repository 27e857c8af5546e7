"""``prune --executor``: the flags are offered without importing Ray or torch, and checked before any work (the cluster run: test_cluster.py)."""

from __future__ import annotations

import subprocess
import sys

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


def test_prune_refuses_a_ray_address_without_the_ray_executor(cli, assert_one_line_error):
    assert_one_line_error(cli("prune", "--ray-address", "auto", "--keep", "0.5"), "--ray-address auto: only with --executor ray")



def test_hil_refuses_a_ray_address_without_a_farm_and_a_runner_with_one(cli, assert_one_line_error, tmp_path):
    assert_one_line_error(cli("hil", "--bundle", str(tmp_path), "--target", "x86_64", "--ray-address", "auto"),
                          "--ray-address auto: only with --farm")
    assert_one_line_error(cli("hil", "--bundle", str(tmp_path), "--target", "x86_64", "--farm", "f.toml", "--runner", "qemu"),
                          "each board of a farm names its own runner")
    assert_one_line_error(cli("hil", "--bundle", str(tmp_path), "--target", "x86_64", "--farm", str(tmp_path / "f.toml")),
                          "farm file", "f.toml")
