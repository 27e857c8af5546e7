"""HIL: Pendulum-v1 on the host, the stub in the loop; lockstep reproduces the host, free mode keeps time."""

import numpy as np
import pytest

from tools.pipeline.hil import ACTION_FIDELITY, FIDELITY, EpisodeReport, HilReport, run_hil
from tools.plant.policy import as_policy
from tools.plant.rollouts import rollout_gym


@pytest.mark.parametrize("target, episodes", [("x86_64", 2), ("cortex-a72", 1)])
def test_lockstep_reproduces_the_host_return_within_tolerance(target, episodes, small_bundle, small_controller):
    report = run_hil(small_bundle, target, as_policy(small_controller), episodes=episodes, seed=3, mode="lockstep")
    d = report.to_dict()
    assert d["seeds"] == list(range(3, 3 + episodes))
    assert len(d["returns"]) == len(d["host_returns"]) == episodes
    assert np.all(np.abs(np.subtract(d["returns"], d["host_returns"])) <= FIDELITY)
    assert d["ok"] and d["max_abs_action_diff"] < 1e-4
    assert d["crc_errors"] == 0 and d["deadline_misses"] == 0
    assert d["latency_us"]["min"] > 0 and d["latency_us"]["max"] >= d["latency_us"]["p99"]


def test_lockstep_with_device_deadline_overruns_applies_the_safe_action_and_counts_misses(
    small_bundle, small_controller
):
    device_args = ("--deadline-us", "1000", "--stall-us", "2000")
    report = run_hil(
        small_bundle,
        "x86_64",
        as_policy(small_controller),
        episodes=1,
        seed=0,
        mode="lockstep",
        device_args=device_args,
    )
    d = report.to_dict()
    assert d["deadline_misses"] == 200  # every step overran, every step got zero torque
    assert d["episodes"][0]["error_replies"] == {"deadline": 200}
    assert not d["ok"]  # zero torque all episode is not the host's controller


def test_free_running_ticks_at_the_requested_rate(small_bundle, small_controller):
    report = run_hil(small_bundle, "x86_64", as_policy(small_controller), episodes=1, seed=0, mode="free", rate_hz=200)
    d = report.to_dict()
    assert abs(d["period_ms"]["mean"] - 5.0) < 0.5
    assert d["rate_hz"] == 200 and d["deadline_ms"] == pytest.approx(5.0)
    assert len(d["returns"]) == 1 and np.isfinite(d["returns"][0])


def test_free_running_holds_the_last_action_when_replies_miss_the_deadline(small_bundle, small_controller):
    # every inference takes 8 ms against a 5 ms tick deadline: all ticks miss, the actuator holds zero
    report = run_hil(
        small_bundle,
        "x86_64",
        as_policy(small_controller),
        episodes=1,
        seed=0,
        mode="free",
        rate_hz=100,
        deadline_ms=5,
        device_args=("--stall-us", "8000"),
    )
    d = report.to_dict()
    assert d["deadline_misses"] == 200
    zero_torque = rollout_gym(lambda obs: np.zeros((len(obs), 1), np.float32), [0])[0]
    assert d["returns"][0] == pytest.approx(zero_torque, abs=1e-9)


def test_lockstep_on_armv7_without_a_runtime_reproduces_the_host(small_bundle, small_controller):
    report = run_hil(small_bundle, "cortex-a7", as_policy(small_controller), episodes=1, seed=8, mode="lockstep")
    assert report.fidelity_ok and report.to_dict()["max_abs_action_diff"] < 1e-4


def _episode(return_diff: float, action_diff: float) -> EpisodeReport:
    stats = {"min": 1.0, "mean": 1.0, "std": 0.0, "p99": 1.0, "max": 1.0}
    return EpisodeReport(
        seed=0,
        ret=return_diff,
        host_return=0.0,
        latency_us=stats,
        rtt_us=stats,
        period_ms=stats,
        deadline_misses=0,
        error_replies={},
        crc_errors=0,
        resyncs=0,
        max_abs_action_diff=action_diff,
    )


@pytest.mark.parametrize(
    "return_diff, action_diff, failed",
    [
        (0.0, 0.0, []),
        (0.0, 1.02, ["actions"]),
        (0.5, 0.0, ["returns"]),
        (0.5, 1.0, ["returns", "actions"]),
        (FIDELITY, ACTION_FIDELITY, []),
    ],
)
def test_lockstep_verdict_judges_returns_and_per_step_actions(return_diff, action_diff, failed):
    report = HilReport("x86_64", "native", "lockstep", 0, 0.0, None, [_episode(return_diff, action_diff)])
    d = report.to_dict()
    assert d["fidelity_failed"] == failed and d["ok"] == (not failed)
    assert d["action_fidelity_tolerance"] == ACTION_FIDELITY and d["max_abs_action_diff"] == action_diff


def test_free_mode_reports_the_rate_it_kept():
    slow = _episode(0.0, 0.0)
    slow.period_ms = {"mean": 10.0, "std": 0.0, "p99": 10.0, "max": 10.0}  # asked 200 Hz, kept 100 Hz
    d = HilReport("x86_64", "native", "free", 0, 200.0, 5.0, [slow]).to_dict()
    assert d["achieved_rate_hz"] == pytest.approx(100.0) and d["rate_kept"] is False
