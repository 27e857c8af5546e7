"""The two-node Ray cluster checks (cluster/cluster_checks.py), run in a network namespace with loopback only.

Ray advertises a node's interface address even when told 127.0.0.1; in a namespace of its own with nothing but
``lo``, every node is 127.0.0.1 and no packet can leave the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def test_the_cluster_checks_pass_on_a_two_node_cluster_in_a_loopback_only_namespace() -> None:
    ns = f"pae-ray-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        env = {**os.environ, "PAE_RAY_NETNS": ns, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        cmd = [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "python_files=cluster_checks.py",
            str(HERE / "cluster"),
        ]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    tail = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    summary = proc.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, tail
