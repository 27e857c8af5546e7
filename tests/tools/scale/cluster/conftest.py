"""A real two-node Ray cluster on this machine for the scale tests: a head and a worker node, each its own processes.

Run only inside the network namespace that tests/tools/scale/test_cluster_in_netns.py makes (loopback only):
Ray advertises the machine's interface address otherwise, and tests may talk to nothing but loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import ray
from ray.cluster_utils import Cluster

NETNS_ENV = "PAE_RAY_NETNS"
OBJECT_STORE = 100_000_000  # bytes per node: the smallest store Ray accepts; candidates and results are small
# Find a dead node within a few seconds, not Ray's default half minute.
FAST_FAILURE = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_failure_threshold": 4}


@pytest.fixture(scope="module")  # one module uses it: stopped when it is done, idle Ray processes do not slow the rest
def ray_cluster() -> Iterator[Cluster]:
    assert os.environ.get(NETNS_ENV), (
        f"run inside the test's network namespace ({NETNS_ENV} unset): see test_cluster_in_netns.py"
    )
    """Head (1 CPU, one x86_64 board) and worker node (1 CPU, an x86_64 and a cortex-a7 board) on this machine; this process its driver."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {"board:x86_64": 1},
            "object_store_memory": OBJECT_STORE,
            "include_dashboard": False,
            "_system_config": FAST_FAILURE,
        },
    )
    cluster.add_node(num_cpus=1, resources={"board:x86_64": 1, "board:cortex-a7": 1}, object_store_memory=OBJECT_STORE)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
