"""Hardware in the loop: gymnasium's Pendulum-v1 on the host, the controller in the device stub (``run_hil``).

Two modes:

* ``lockstep``: plant and controller wait for each other. Deterministic, so the device must
  reproduce the host's return (the torch controller in gymnasium) within ``FIDELITY`` per episode
  and, at every step, the host's action for the same observation within ``ACTION_FIDELITY`` (returns
  alone say too little: they saturate, e.g. at 1000 on InvertedPendulum-v5, whatever the actions).
* ``free``: the plant ticks on the wall clock (20 Hz, the plant's own dt, or ``rate_hz``); an action
  that has not arrived by the deadline is a miss and the actuator holds the last action.

Reward barely reacts to timing faults, so timing is reported separately: on-device inference time,
host round-trip time, loop period, deadline misses, CRC errors and resyncs, and the largest
|action on device - action on host| for the same observations.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from export import DeviceSession, Manifest, Reply, frames, open_session, read_manifest
from tools.controllers.load import load_source
from tools.controllers.native import Controller
from tools.controllers.source import ControllerSource
from tools.errors import ToolsError
from tools.pipeline.choices import HIL_MODES, MAX_RATE_HZ
from tools.plant.episodes import episode_seeds
from tools.plant.pendulum import ENV_ID, BatchedPendulum
from tools.plant.policy import Policy
from tools.plant.rollouts import rollout_gym

MODES = HIL_MODES
FIDELITY = 1e-3  # largest |device return - host return| per episode accepted in lockstep
# Largest |device action - host action| over a lockstep run, in action units: ten times the 1e-5 at which
# export verifies every library, so float32 reordering passes and a different controller does not.
ACTION_FIDELITY = 1e-4
RATE_SLACK = 0.05  # free mode: a run whose mean period is this much longer than asked is reported as not kept


def _stats(values, keys=("min", "mean", "p99", "max")) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {k: 0.0 for k in keys}
    table = {
        "min": v.min(),
        "mean": v.mean(),
        "std": v.std(),
        "p50": np.percentile(v, 50),
        "p99": np.percentile(v, 99),
        "max": v.max(),
    }
    return {k: round(float(table[k]), 3) for k in keys}


@dataclass
class EpisodeReport:
    """One seeded episode with the device in the loop."""

    seed: int
    ret: float  # closed-loop return with the device's actions
    host_return: float  # the torch controller alone in gymnasium, same seed
    latency_us: dict  # on-device inference time: min, mean, p99, max
    rtt_us: dict  # host round trip (send observation -> action received)
    period_ms: dict  # loop period: mean, std, p99, max
    deadline_misses: int
    error_replies: dict  # error name -> count of ERROR frames the device sent
    crc_errors: int  # device and host side together
    resyncs: int
    max_abs_action_diff: float  # over the steps the device answered with an action

    @property
    def return_diff(self) -> float:
        return abs(self.ret - self.host_return)


@dataclass
class HilReport:
    """A HIL run: per-episode reports and the summary the CLI prints (``--json`` takes to_dict())."""

    target: str
    runner: str
    mode: str
    seed: int
    rate_hz: float
    deadline_ms: float | None
    episodes: list[EpisodeReport] = field(default_factory=list)

    @property
    def returns(self) -> list[float]:
        return [e.ret for e in self.episodes]

    @property
    def host_returns(self) -> list[float]:
        return [e.host_return for e in self.episodes]

    @property
    def max_return_diff(self) -> float:
        return max((e.return_diff for e in self.episodes), default=0.0)

    @property
    def max_action_diff(self) -> float:
        """Largest |device action - host action| over the run (steps the device answered with an action)."""
        return max((e.max_abs_action_diff for e in self.episodes), default=0.0)

    @property
    def fidelity_failed(self) -> list[str]:
        """What the device did not reproduce in lockstep: "returns" (beyond FIDELITY), "actions" (beyond ACTION_FIDELITY)."""
        failed = []
        if not self.max_return_diff <= FIDELITY:
            failed.append("returns")
        if not self.max_action_diff <= ACTION_FIDELITY:
            failed.append("actions")
        return failed

    @property
    def fidelity_ok(self) -> bool:
        return not self.fidelity_failed

    @property
    def achieved_rate_hz(self) -> float | None:
        """Free mode: the loop rate actually kept (1 / mean period), None before any period was measured."""
        periods = [e.period_ms["mean"] for e in self.episodes if e.period_ms.get("mean")]
        return 1e3 / float(np.mean(periods)) if periods else None

    @property
    def rate_kept(self) -> bool:
        """Free mode: whether the loop kept the asked rate (mean period within RATE_SLACK of it)."""
        achieved = self.achieved_rate_hz
        return achieved is None or not self.rate_hz or achieved >= self.rate_hz * (1 - RATE_SLACK)

    def to_dict(self) -> dict:
        eps = self.episodes
        merged = lambda key, stat: [e.__dict__[key][stat] for e in eps]  # noqa: E731
        return {
            "ok": self.fidelity_ok if self.mode == "lockstep" else True,
            "target": self.target,
            "runner": self.runner,
            "mode": self.mode,
            "seed": self.seed,
            "seeds": [e.seed for e in eps],
            "rate_hz": self.rate_hz,
            "deadline_ms": self.deadline_ms,
            "returns": self.returns,
            "host_returns": self.host_returns,
            "max_return_diff": self.max_return_diff,
            "fidelity_tolerance": FIDELITY,
            "latency_us": {
                "min": min(merged("latency_us", "min")),
                "mean": float(np.mean(merged("latency_us", "mean"))),
                "p99": max(merged("latency_us", "p99")),
                "max": max(merged("latency_us", "max")),
            },
            "rtt_us": {
                "mean": float(np.mean(merged("rtt_us", "mean"))),
                "p99": max(merged("rtt_us", "p99")),
                "max": max(merged("rtt_us", "max")),
            },
            "period_ms": {
                "mean": float(np.mean(merged("period_ms", "mean"))),
                "std": float(np.mean(merged("period_ms", "std"))),
                "p99": max(merged("period_ms", "p99")),
                "max": max(merged("period_ms", "max")),
            },
            "deadline_misses": sum(e.deadline_misses for e in eps),
            "crc_errors": sum(e.crc_errors for e in eps),
            "resyncs": sum(e.resyncs for e in eps),
            "max_abs_action_diff": self.max_action_diff,
            "action_fidelity_tolerance": ACTION_FIDELITY,
            "fidelity_failed": self.fidelity_failed if self.mode == "lockstep" else [],
            "achieved_rate_hz": self.achieved_rate_hz if self.mode == "free" else None,
            "rate_kept": self.rate_kept if self.mode == "free" else None,
            "episodes": [asdict(e) for e in eps],
        }


def _counters(session: DeviceSession) -> tuple[int, int]:
    """CRC errors and resyncs seen so far on both ends of the link."""
    device = session.stats()
    return (device["crc_errors"] + session.parser.crc_errors, device["resyncs"] + session.parser.resyncs)


def _lockstep_episode(env, session: DeviceSession, policy: Policy, seed: int) -> tuple[float, dict]:
    obs, _ = env.reset(seed=int(seed))
    total, done = 0.0, False
    dev_us, rtt_us, period_ms, diffs = [], [], [], []
    errors: dict[str, int] = {}
    last = None
    while not done:
        t0 = time.perf_counter()
        reply = session.infer(obs)
        rtt_us.append((time.perf_counter() - t0) * 1e6)
        dev_us.append(reply.device_us)
        if reply.error:
            errors[reply.error] = errors.get(reply.error, 0) + 1
        else:
            host = np.asarray(policy(obs[None, :]), dtype=np.float32).reshape(-1)
            diffs.append(float(np.max(np.abs(reply.action - host))))
        obs, reward, terminated, truncated, _ = env.step(reply.action.astype(np.float32))
        now = time.perf_counter()
        if last is not None:
            period_ms.append((now - last) * 1e3)
        last = now
        total += float(reward)
        done = terminated or truncated
    return total, {
        "dev_us": dev_us,
        "rtt_us": rtt_us,
        "period_ms": period_ms,
        "diffs": diffs,
        "errors": errors,
        "misses": errors.get("deadline", 0),
    }


def _free_episode(
    env, session: DeviceSession, policy: Policy, seed: int, period: float, deadline: float, safe_action: np.ndarray
) -> tuple[float, dict]:
    """Wall-clock ticks: send the observation at the tick, take the reply if it beats the deadline."""
    obs, _ = env.reset(seed=int(seed))
    total, done = 0.0, False
    dev_us, rtt_us, period_ms, diffs = [], [], [], []
    errors: dict[str, int] = {}
    misses = 0
    held = safe_action.copy()  # the actuator's value until the first action arrives
    next_tick = time.perf_counter()
    last_tick = None
    while not done:
        while (wait := next_tick - time.perf_counter()) > 0:
            time.sleep(min(wait, 0.002) if wait > 0.0005 else 0)
        tick = time.perf_counter()
        if last_tick is not None:
            period_ms.append((tick - last_tick) * 1e3)
        last_tick = tick
        next_tick += period
        seq = session.next_seq()
        session.send(frames.encode(frames.OBS, seq, obs))
        reply: Reply | None = None
        while reply is None:
            left = tick + deadline - time.perf_counter()
            item = session.receive(timeout=max(left, 0.0))
            if item is None:
                break
            if isinstance(item, frames.Frame) and item.seq == seq and item.type in (frames.ACTION, frames.ERROR):
                if time.perf_counter() - tick > deadline:
                    break  # it was already waiting, but the host saw it too late: still a miss
                reply = Reply(item.seq, item.payload, item.error_name, item.aux / 1e3)
            # anything else is a late reply to an earlier tick (already counted as a miss): dropped
        if reply is None:
            misses += 1  # hold the last action
        else:
            rtt_us.append((time.perf_counter() - tick) * 1e6)
            dev_us.append(reply.device_us)
            if reply.error:
                errors[reply.error] = errors.get(reply.error, 0) + 1
                misses += reply.error == "deadline"
            else:
                host = np.asarray(policy(obs[None, :]), dtype=np.float32).reshape(-1)
                diffs.append(float(np.max(np.abs(reply.action - host))))
            held = reply.action.astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(held)
        total += float(reward)
        done = terminated or truncated
    # drain replies still in flight so they do not count against the next episode
    while session.receive(timeout=min(0.5, deadline * 4)) is not None:
        pass
    return total, {
        "dev_us": dev_us,
        "rtt_us": rtt_us,
        "period_ms": period_ms,
        "diffs": diffs,
        "errors": errors,
        "misses": misses,
    }


def run_hil(
    bundle_dir: Path,
    target: str,
    policy: Policy,
    episodes: int = 10,
    seed: int = 0,
    mode: str = "lockstep",
    rate_hz: float | None = None,
    deadline_ms: float | None = None,
    device_args: tuple[str, ...] = (),
    runner: str | None = None,
    progress: Callable[[int, EpisodeReport], None] | None = None,
    env_id: str = ENV_ID,
    public_key: Path | None = None,
) -> HilReport:
    """Close the loop: the gymnasium env (Pendulum-v1 by default) on the host, the bundle's controller in the stub.

    ``policy`` is the host-side controller (the torch module as a numpy policy) that the device is
    compared with. ``rate_hz`` (free mode) defaults to the plant's 1/dt = 20 Hz; ``deadline_ms``
    defaults to one period. ``device_args`` go to ``pae_stub serve`` (``--deadline-us``...). With
    ``public_key`` the device runs the bundle only if it is signed with that key's private half (the
    stub checks ``manifest.sig`` before loading anything, a firmware's boot stage checks its image).
    """
    import gymnasium as gym

    if mode not in MODES:
        raise ToolsError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    env = gym.make(env_id)
    env.close()
    # free mode ticks at the env's own step time where it has one (Pendulum-v1: dt 0.05 s), else 20 Hz
    rate = float(rate_hz or 1.0 / getattr(env.unwrapped, "dt", BatchedPendulum.dt))
    if not 0 < rate <= MAX_RATE_HZ:
        raise ToolsError(f"rate must be in (0, {MAX_RATE_HZ:g}] Hz, got {rate_hz}")
    period = 1.0 / rate
    if deadline_ms is not None and not 0 < deadline_ms < float("inf"):
        raise ToolsError(f"deadline must be a finite number of ms > 0, got {deadline_ms}")
    deadline = (deadline_ms / 1e3) if deadline_ms else period
    seeds = episode_seeds(episodes, seed)
    host_returns = rollout_gym(policy, seeds, env_id)
    report = HilReport(
        target,
        "",
        mode,
        seed,
        rate if mode == "free" else 0.0,
        deadline * 1e3 if mode == "free" or deadline_ms else None,
    )
    env = gym.make(env_id)
    try:
        with open_session(
            Path(bundle_dir), target, extra_args=tuple(device_args), runner=runner, public_key=public_key
        ) as session:
            report.runner = session.where
            safe = np.zeros(session.act_dim, dtype=np.float32)
            if "--safe-action" in device_args:
                safe = np.array(device_args[device_args.index("--safe-action") + 1].split(","), dtype=np.float32)
            session.infer(np.zeros(session.obs_dim, dtype=np.float32))  # warm-up: first call pays lazy loading
            crc0, resync0 = _counters(session)
            for i, s in enumerate(seeds):
                if mode == "lockstep":
                    ret, m = _lockstep_episode(env, session, policy, s)
                else:
                    ret, m = _free_episode(env, session, policy, s, period, deadline, safe)
                crc1, resync1 = _counters(session)
                ep = EpisodeReport(
                    seed=s,
                    ret=ret,
                    host_return=float(host_returns[i]),
                    latency_us=_stats(m["dev_us"]),
                    rtt_us=_stats(m["rtt_us"]),
                    period_ms=_stats(m["period_ms"], ("mean", "std", "p99", "max")),
                    deadline_misses=int(m["misses"]),
                    error_replies=m["errors"],
                    crc_errors=crc1 - crc0,
                    resyncs=resync1 - resync0,
                    max_abs_action_diff=max(m["diffs"], default=0.0),
                )
                crc0, resync0 = crc1, resync1
                report.episodes.append(ep)
                if progress:
                    progress(i, ep)
    finally:
        env.close()
    return report


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes (read, never loaded or unpickled)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def host_controller(
    bundle: Path, source: ControllerSource, compare_other: bool = False, manifest: Manifest | None = None
) -> Controller:
    """The host-side controller of a HIL run: ``source`` if it names a file, else the file the bundle was exported
    from. Either must be the bundle's source (same sha256, checked on the bytes before anything loads them)
    unless ``compare_other`` says a comparison with another controller is wanted. ``manifest``: the bundle's,
    already checked (a signed bundle's comes from the bytes whose signature was verified); else it is read."""
    manifest = manifest if manifest is not None else read_manifest(bundle)
    expected = manifest.source.get("sha256")
    if source.path is not None:
        path = Path(source.path)
        if not compare_other and path.is_file():
            actual = file_sha256(path)
            if actual != expected:
                recorded = (
                    f"the {expected[:12]}... the bundle was exported from"
                    if expected
                    else "recorded in the bundle (none is)"
                )
                raise ToolsError(
                    f"{path}: sha256 {actual[:12]}... is not {recorded}; pass --compare-other-controller "
                    "to compare the device with another controller"
                )
            return load_source(replace(source, obs_norm=checked_obs_norm(manifest, source.obs_norm)))
        return load_source(source)
    path_text = manifest.source.get("path")
    if not path_text or not Path(path_text).is_file():
        raise ToolsError(f"{bundle}: the controller it was exported from ({path_text}) is not here; pass --controller")
    path = Path(path_text)
    actual = file_sha256(path)  # before loading: an SB3 zip or a factory runs code
    if not expected or actual != expected:
        raise ToolsError(
            f"{path}: sha256 {actual[:12]}... is not the {(expected or 'none')[:12]}... the bundle "
            "was exported from; pass --controller explicitly"
        )
    obs_norm = checked_obs_norm(manifest, source.obs_norm)
    env = source.env or manifest.spec.get("env_id")  # a foreign file takes its sizes from the env
    return load_source(ControllerSource(path, source.format, env, source.factory, source.clip_actions, obs_norm))


def checked_obs_norm(manifest: Manifest, given: Path | None) -> Path | None:
    """The observation statistics to reload the bundle's source with, their sha256 checked before they are read.

    The manifest's source record names the statistics the bundle was exported with (``architecture.obs_norm``:
    file, how it was chosen, sha256). ``given`` (hil's ``--obs-norm``) must be that file's bytes; without it, the
    recorded file (given at export or found beside the zip then) is used, and must match too.
    """
    record = ((manifest.source or {}).get("architecture") or {}).get("obs_norm") or {}
    expected = record.get("sha256")
    if not record.get("source"):
        return given  # exported on raw observations (or before the record held statistics): nothing to check
    path = Path(given) if given is not None else Path(record["source"])
    if expected is None:  # a bundle written before the sha256 was recorded: the file is trusted as named
        return given if given is not None else (path if record.get("how") == "--obs-norm" else None)
    if not path.is_file():
        raise ToolsError(
            f"{path}: the observation statistics the bundle was exported with are not here; pass --obs-norm FILE"
        )
    actual = file_sha256(path)
    if actual != expected:
        raise ToolsError(
            f"{path}: sha256 {actual[:12]}... is not the {expected[:12]}... of the observation statistics "
            "the bundle was exported with; pass --obs-norm with that file, or --controller to compare another controller"
        )
    return path  # named explicitly: the bytes just checked, wherever the controller file now is
