"""HIL episodes across a farm of boards: each board a Ray actor holding its target's resource, episodes to free boards.

A farm file is a small TOML list of boards::

    [[board]]
    name = "pi4-1"
    target = "cortex-a72"
    runner = "ssh://pi@10.0.0.21"     # native | qemu | auto | ssh://user@host[:port][?...]

Each board becomes an actor that asks for one unit of the custom resource ``board:<target>``, so it
is placed on a node that declares that it is wired to such a board (``ray start ... --resources
'{"board:cortex-a72": 1}'``; a local instance started here declares one per board of the file).
Episodes of a target go to whichever board of that target is free. A board whose actor dies (its
process or node gone, the board unplugged) is taken out of the farm, and the episode it was running
is run again on another board of the same target; the report lists each such rerun. If every board
of a target is gone while episodes of that target remain, the run stops with a ScaleError.
"""

from __future__ import annotations

import tomllib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from targets import TargetError, get_target, parse_ssh_url
from tools.scale.cluster import connect, disconnect, ray_module
from tools.scale.errors import ScaleError

RUNNERS = ("native", "qemu", "auto")  # besides ssh://user@host[:port]


@dataclass(frozen=True)
class Board:
    """One board of the farm: its name, its target and how programs reach it (native, qemu, auto or ssh://...)."""

    name: str
    target: str
    runner: str = "auto"

    @property
    def resource(self) -> str:
        """The custom Ray resource its actor holds (``board:<target>``)."""
        return f"board:{self.target}"


@dataclass(frozen=True)
class Farm:
    """The boards of a farm file, in file order."""

    boards: tuple[Board, ...]
    source: str = ""  # the file it was read from, for messages

    def resources(self) -> dict[str, float]:
        """``board:<target>`` -> number of boards of that target (what a local Ray instance declares)."""
        out: dict[str, float] = {}
        for b in self.boards:
            out[b.resource] = out.get(b.resource, 0.0) + 1.0
        return out

    def targets(self) -> list[str]:
        """The targets of the farm's boards, in file order, each once."""
        return list(dict.fromkeys(b.target for b in self.boards))


def check_runner(runner: str, where: str) -> None:
    """A runner the farm can hand to a session: native, qemu, auto or a well-formed ssh:// URL."""
    if runner.startswith("ssh://"):
        try:
            parse_ssh_url(runner)
        except TargetError as e:
            raise ScaleError(f"{where}: {e}") from e
    elif runner not in RUNNERS:
        raise ScaleError(f"{where}: runner {runner!r}: expected one of {', '.join(RUNNERS)} or ssh://user@host[:port]")


def parse_farm(text: str, source: str = "<farm>") -> Farm:
    """A farm from TOML text (``[[board]]`` tables with name, target and runner); errors name the board."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScaleError(f"{source}: not TOML: {e}") from e
    tables = data.get("board")
    if not isinstance(tables, list) or not tables:
        raise ScaleError(f"{source}: expected one or more [[board]] tables (name, target, runner)")
    boards: list[Board] = []
    for i, t in enumerate(tables):
        where = f"{source}: board {i + 1}"
        unknown = sorted(set(t) - {"name", "target", "runner"})
        if unknown:
            raise ScaleError(f"{where}: unknown key(s) {', '.join(unknown)}; expected name, target, runner")
        name, target, runner = t.get("name"), t.get("target"), t.get("runner", "auto")
        if not isinstance(name, str) or not name:
            raise ScaleError(f"{where}: 'name' must be a non-empty string")
        where = f"{source}: board {name!r}"
        if any(b.name == name for b in boards):
            raise ScaleError(f"{where}: the name is used twice")
        if not isinstance(target, str) or not isinstance(runner, str):
            raise ScaleError(f"{where}: 'target' and 'runner' must be strings")
        try:
            get_target(target)
        except TargetError as e:
            raise ScaleError(f"{where}: {e}") from e
        check_runner(runner, where)
        boards.append(Board(name, target, runner))
    return Farm(tuple(boards), source)


def read_farm(path: Path) -> Farm:
    """The farm described by the TOML file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ScaleError(f"farm file {path}: {e.strerror or e}") from e
    return parse_farm(text, str(path))


@dataclass(frozen=True)
class Episode:
    """One unit of farm work: an episode of ``target`` starting from ``seed`` (index: its place in the run)."""

    index: int
    target: str
    seed: int


@dataclass
class Rerun:
    """An episode whose board died under it, and where it ran again."""

    seed: int
    target: str
    failed_board: str
    reason: str
    rerun_on: str = ""


@dataclass
class FarmRun:
    """A farm run: each episode's result (in episode order) and board, the boards lost, the episodes rerun."""

    results: list[Any]
    boards: list[str]  # the board that produced each result
    dead_boards: list[str] = field(default_factory=list)
    reruns: list[Rerun] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready: the board of each episode, the boards lost, the reruns (the results are the caller's to report)."""
        return {
            "boards": list(self.boards),
            "dead_boards": list(self.dead_boards),
            "reruns": [asdict(r) for r in self.reruns],
        }


EpisodeFn = Callable[[Board, Episode], Any]  # runs one episode on one board (inside that board's actor)


class BoardWorker:
    """What a board's actor holds: the board, and the episode function applied to each episode given to it."""

    def __init__(self, board: Board) -> None:
        self.board = board

    def run(self, fn: EpisodeFn, episode: Episode) -> Any:
        """One episode on this board."""
        return fn(self.board, episode)


def _check_resources(ray: Any, farm: Farm) -> None:
    offered = ray.cluster_resources()
    for resource, wanted in farm.resources().items():
        if offered.get(resource, 0.0) < wanted:
            raise ScaleError(
                f"{farm.source}: {int(wanted)} board(s) need the Ray resource {resource!r}, the cluster offers "
                f"{offered.get(resource, 0.0):g}; start the node wired to each board with "
                f"ray start ... --resources '{{\"{resource}\": 1}}'"
            )


def run_on_farm(
    farm: Farm,
    episodes: Sequence[Episode],
    fn: EpisodeFn,
    address: str | None = None,
    on_result: Callable[[Episode, str, Any], None] | None = None,
) -> FarmRun:
    """Run every episode on a free board of its target, through the board's actor; a dead board's episode runs again.

    ``fn(board, episode)`` runs inside the board's actor (it must pickle: a module-level function or
    a partial of one). ``address``: the Ray cluster (or ``RAY_ADDRESS``), else a local instance with
    one ``board:<target>`` slot per board. ``on_result(episode, board name, result)`` is called as
    results arrive (progress).
    """
    if len({e.index for e in episodes}) != len(episodes):
        raise ScaleError("farm episodes need distinct indexes (their places in the run)")
    missing = sorted({e.target for e in episodes} - set(farm.targets()))
    if missing:
        raise ScaleError(
            f"{farm.source}: no board of target(s) {', '.join(missing)}; boards: "
            + ", ".join(f"{b.name} ({b.target})" for b in farm.boards)
        )
    ray = ray_module()
    started = connect(address, resources=farm.resources())
    actors: dict[str, Any] = {}
    try:
        _check_resources(ray, farm)
        # num_cpus=0: a board's actor mostly waits on its device and must not take a worker slot from the search
        worker = ray.remote(BoardWorker)
        by_name = {b.name: b for b in farm.boards}
        for b in farm.boards:
            actors[b.name] = worker.options(
                num_cpus=0, resources={b.resource: 1}, max_restarts=0, max_task_retries=0
            ).remote(b)
        fn_ref = ray.put(fn)
        pending = {t: deque(e for e in episodes if e.target == t) for t in farm.targets()}
        free = [b.name for b in farm.boards]
        running: dict[Any, tuple[str, Episode]] = {}
        results: dict[int, tuple[Any, str]] = {}
        reruns: dict[int, list[Rerun]] = {}
        dead: list[str] = []
        while True:
            for name in list(free):
                queue = pending[by_name[name].target]
                if queue:
                    episode = queue.popleft()
                    running[actors[name].run.remote(fn_ref, episode)] = (name, episode)
                    free.remove(name)
            if not running:
                left = [e for q in pending.values() for e in q]
                if left:
                    raise ScaleError(
                        f"{farm.source}: every board of target {left[0].target} died "
                        f"({', '.join(dead)}); {len(left)} episode(s) not run"
                    )
                break
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                name, episode = running.pop(ref)
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayActorError as e:
                    dead.append(name)
                    ray.kill(actors.pop(name))
                    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    reruns.setdefault(episode.index, []).append(Rerun(episode.seed, episode.target, name, reason))
                    pending[episode.target].appendleft(episode)
                    continue
                results[episode.index] = (value, name)
                free.append(name)
                if on_result is not None:
                    on_result(episode, name, value)
        order = sorted(results)
        run = FarmRun([results[i][0] for i in order], [results[i][1] for i in order], dead)
        for index, lost in sorted(reruns.items()):
            for r in lost:
                r.rerun_on = results[index][1]
                run.reruns.append(r)
        return run
    finally:
        for actor in actors.values():
            ray.kill(actor)
        disconnect(started)
