"""The executor seam: ``map(fn, items) -> [fn(item) ...]`` in order, here (local) or on a Ray cluster (ray).

Every fan-out of the tool goes through one :class:`Executor`: candidate evaluations of a search
(:func:`tools.scale.objective.batched`), bench cells (:mod:`tools.scale.cells`). Work items carry
everything a result depends on (the model, the seeds), so a result does not depend on where it
ran: the same seed gives the same numbers with ``local`` and ``ray``. A Ray task whose worker dies
(the process killed, its node gone) is run again elsewhere, up to ``max_retries`` times.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from tools.scale.cluster import connect, disconnect, ray_module
from tools.scale.errors import ScaleError

T = TypeVar("T")
R = TypeVar("R")
EXECUTORS = ("local", "ray")
MAX_RETRIES = 3  # times a task is rerun after its worker or node died (Ray's default for tasks)
CHUNKS_PER_WORKER = (
    4  # a map is cut into about this many tasks per worker: cheap items share a task, slow ones get their own
)


class Executor(Protocol):
    """Where work runs: ``map`` keeps the order of ``items``; ``close`` releases what the executor started."""

    name: str
    workers: int  # items that may run at once

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]: ...

    def close(self) -> None: ...


class LocalExecutor:
    """In this process, one item after the other (the default; no dependency)."""

    name = "local"
    workers = 1

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]``."""
        return [fn(item) for item in items]

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def apply_chunk(fn: Callable[[Any], Any], chunk: Sequence[Any]) -> list[Any]:
    """One Ray task: ``fn`` on each item of a contiguous slice of the work, in order."""
    return [fn(item) for item in chunk]


def chunks(items: Sequence[T], parts: int) -> list[Sequence[T]]:
    """``items`` cut into at most ``parts`` contiguous slices of nearly equal length (order kept)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


class RayExecutor:
    """On a Ray cluster: ``address`` (or ``RAY_ADDRESS``) names one; without, a local instance with ``num_workers`` CPUs.

    Each map puts ``fn`` into the object store once and submits the items in contiguous chunks
    (about :data:`CHUNKS_PER_WORKER` per worker, or ``chunk`` items each), one CPU per task.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_workers: int | None = None,
        max_retries: int = MAX_RETRIES,
        chunk: int | None = None,
    ) -> None:
        if num_workers is not None and num_workers < 1:
            raise ScaleError(f"num_workers must be >= 1, got {num_workers}")
        if chunk is not None and chunk < 1:
            raise ScaleError(f"chunk must be >= 1 item, got {chunk}")
        self.ray = ray_module()
        self.started = connect(address, num_cpus=num_workers)
        self.workers = num_workers or max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        self.chunk = chunk
        self.task = self.ray.remote(apply_chunk).options(num_cpus=1, max_retries=max_retries, retry_exceptions=False)
        self.tasks = 0  # tasks submitted so far (each a chunk of items)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) for item in items]`` across the cluster's workers, in order."""
        items = list(items)
        if not items:
            return []
        parts = -(-len(items) // self.chunk) if self.chunk else self.workers * CHUNKS_PER_WORKER
        fn_ref = self.ray.put(fn)
        refs = [self.task.remote(fn_ref, part) for part in chunks(items, parts)]
        self.tasks += len(refs)
        return [result for part in self.ray.get(refs) for result in part]

    def close(self) -> None:
        """Disconnect from Ray if this executor connected (a local instance it started stops with it)."""
        disconnect(self.started)
        self.started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(name: str = "local", address: str | None = None, num_workers: int | None = None) -> Executor:
    """The executor called ``name`` (:data:`EXECUTORS`); ``address`` and ``num_workers`` apply to ``ray``."""
    if name == "local":
        if address:
            raise ScaleError(f"--ray-address {address}: only with --executor ray")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, num_workers)
    raise ScaleError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
