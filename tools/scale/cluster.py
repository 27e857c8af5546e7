"""Connecting to Ray: the cluster at an address (``--ray-address``, else ``RAY_ADDRESS``), else a Ray instance started here.

Ray is an optional extra (``pip install 'prune-and-export[ray]'``), so it is imported inside
:func:`connect` only: the local executor and the command line's ``--help`` never pay for it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from tools.scale.errors import ScaleError

OBJECT_STORE_BYTES = 100_000_000  # a local instance's shared-memory store: candidates and results are small
PROBE_SECONDS = 5.0  # how long a cluster address may take to accept a TCP connection


def check_reachable(address: str) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) nothing answers at, in seconds (``ray.init`` retries for minutes)."""
    hostport = address.removeprefix("ray://")
    if hostport in ("auto", "local"):
        return
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ScaleError(
            f"Ray address {address!r} (--ray-address or RAY_ADDRESS): expected auto, HOST:PORT or ray://HOST:PORT"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as e:
        raise ScaleError(
            f"Ray at {address} (--ray-address or RAY_ADDRESS): nothing answers there "
            f"({e.strerror or e}); start the cluster first (docs/scale.md) or fix the address"
        ) from e


def ray_module():
    """The ``ray`` package, or a ScaleError saying how to install it."""
    try:
        import ray  # heavy (about a second) and optional: only runs with --executor ray or a farm need it
    except ImportError as e:
        raise ScaleError("--executor ray needs Ray: pip install 'prune-and-export[ray]' (or 'ray>=2.40')") from e
    return ray


def connect(
    address: str | None = None, num_cpus: int | None = None, resources: Mapping[str, float] | None = None
) -> bool:
    """Connect this process to Ray; True if this call did it (then the caller shuts it down), False if it already was.

    ``address`` (``auto``, ``host:port`` or ``ray://host:port``) or ``RAY_ADDRESS`` names a running
    cluster, whose nodes bring their own CPUs and custom resources. Without either, a local instance
    is started with ``num_cpus`` worker slots (None: one per core) and ``resources`` (e.g. a farm's
    ``board:<target>`` slots).
    """
    ray = ray_module()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address:
            check_reachable(address)
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            ray.init(
                num_cpus=num_cpus,
                resources=dict(resources or {}),
                object_store_memory=OBJECT_STORE_BYTES,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ScaleError(f"Ray at {address or 'a new local instance'}: {e}") from e
    return True


def disconnect(started: bool) -> None:
    """Shut Ray down in this process if :func:`connect` started the connection (``started``)."""
    if started:
        ray_module().shutdown()
