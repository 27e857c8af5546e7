"""The TD-MPC agent: group tracing across its components, surgery, planner determinism, export, shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prune import find_groups, keep_indices, masked_copy, prune, score, shrink
from tools.errors import ControllerError
from tools.usecases.tdmpc.agent import (
    COMPONENTS,
    AgentConfig,
    Planner,
    PlannerConfig,
    PolicyPath,
    TDMPCAgent,
    example_inputs,
    load_agent,
    mppi_iteration,
    save_agent,
)
from tools.usecases.tdmpc.evaluate import planning_objective, planning_return

TINY = AgentConfig(latent=6, hidden=12)
FAST_PLAN = PlannerConfig(horizon=2, samples=8, iterations=2, elites=3)


@pytest.fixture(autouse=True)
def one_thread():
    # planning is thousands of tiny ops: thread hand-offs on a busy 2-core machine cost more than the ops
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_agent(seed: int = 0) -> TDMPCAgent:
    torch.manual_seed(seed)
    return TDMPCAgent(TINY).eval()


def test_groups_are_tagged_by_component_and_latent_is_protected():
    agent = tiny_agent()
    g = find_groups(agent, example_inputs(TINY))
    assert set(g.components) == set(COMPONENTS)
    assert len(g.components["q"]) == 4  # two hidden layers in each of the twin heads
    assert not g.excluded
    # z feeds every component and is written back by the dynamics: never a group
    assert "encoder.4" in g.protected and "dynamics.4" in g.protected
    assert all(not name.startswith("encoder.4") for name in g.names)


def test_concat_inputs_keep_latent_and_action_columns():
    agent = tiny_agent()
    g = find_groups(agent, example_inputs(TINY))
    keep = keep_indices(score(agent, g, "l1"), {n.name: 3 for n in g.groups})
    small = shrink(agent, g, keep)
    for name in ("dynamics.0", "reward.0", "q.q1.0", "q.q2.0"):
        assert small.get_submodule(name).in_features == TINY.latent + TINY.act_dim  # concat(z, a) untouched
        assert small.get_submodule(name).out_features == 3
    assert small.get_submodule("q.q1.1").normalized_shape == (3,)
    assert small.dynamics[4].out_features == TINY.latent


def test_shrink_equals_masked_agent():
    agent = tiny_agent(1)
    inputs = example_inputs(TINY, n=32, seed=3)
    g = find_groups(agent, inputs)
    # a LayerNorm normalises over the units it has, so masking is not shrinking there: keep those groups whole
    kept = {n.name: (n.size if any(s.kind == "layernorm" for s in n.slices) else max(1, n.size // 3)) for n in g.groups}
    keep = keep_indices(score(agent, g, "l2"), kept)
    small, masked = shrink(agent, g, keep).eval(), masked_copy(agent, g, keep).eval()
    with torch.no_grad():
        for x, y in zip(small(*inputs), masked(*inputs)):
            assert torch.allclose(x, y, atol=1e-6)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in agent.parameters())


def test_planner_is_deterministic_under_a_seed():
    agent = tiny_agent()
    obs = example_inputs(TINY, n=4, seed=5)[0].numpy()

    def actions(seed: int) -> np.ndarray:
        planner = Planner(agent, FAST_PLAN, seed=seed)
        return np.stack([planner(obs) for _ in range(3)])

    a, b, c = actions(0), actions(0), actions(1)
    assert a.shape == (3, 4, 1) and np.all(np.abs(a) <= 2.0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mppi_iteration_refits_to_the_elites():
    agent = tiny_agent()
    z = agent.encoder(example_inputs(TINY, n=2)[0]).detach()
    mean, std = torch.zeros(2, FAST_PLAN.horizon, 1), torch.ones(2, FAST_PLAN.horizon, 1)
    noise = torch.randn(2, FAST_PLAN.samples, FAST_PLAN.horizon, 1, generator=torch.Generator().manual_seed(0))
    new_mean, new_std = mppi_iteration(agent, z, mean, std, noise, FAST_PLAN)
    assert new_mean.shape == mean.shape and torch.all(new_mean.abs() <= 1)
    assert torch.all(new_std >= FAST_PLAN.min_std) and torch.all(new_std <= FAST_PLAN.max_std)
    with pytest.raises(ValueError, match="elites"):
        PlannerConfig(samples=4, elites=9).check()


def test_planner_step_onnx_and_tvm_match_torch(tmp_path):
    from tools.usecases.tdmpc.export import export_planner_step

    rec = export_planner_step(tiny_agent(), FAST_PLAN, tmp_path, targets=("x86_64",), n_parity=8, calls=5)
    assert (tmp_path / "planner_step.onnx").is_file() and (tmp_path / "planner_step-x86_64.so").is_file()
    assert rec.ort_max_abs_err <= 1e-4
    assert rec.tvm["x86_64"]["max_abs_err_vs_onnxruntime"] <= 1e-4
    # elites by rank count (Sign), no TopK: TVM lowers TopK to a runtime call the device stubs lack
    assert "TopK" not in rec.op_types and "Sign" in rec.op_types and rec.latency_us["tvm-x86_64"] > 0


def test_packed_planner_step_equals_the_unpacked_one():
    from tools.usecases.tdmpc.export import PackedPlannerStep, PlannerStep, pack_inputs, step_inputs

    agent = tiny_agent(2)
    packed, plain = PackedPlannerStep(agent, FAST_PLAN), PlannerStep(agent, FAST_PLAN)
    sets = step_inputs(agent, FAST_PLAN, 6, seed=4)
    assert packed.in_dim == pack_inputs(sets[0]).shape[1] == TINY.latent + (2 + FAST_PLAN.samples) * FAST_PLAN.horizon
    with torch.no_grad():
        rows = torch.from_numpy(np.concatenate([pack_inputs(s) for s in sets]))
        out = packed(rows)  # the same batch of 6 through both: slicing and reshaping must not change a bit
        mean, std = plain(*(torch.from_numpy(np.concatenate([s[k] for s in sets])) for k in sets[0]))
        assert torch.equal(out, torch.cat([mean.flatten(1), std.flatten(1)], dim=1))
        mean, std = plain(*(torch.from_numpy(v) for v in sets[0].values()))  # and batch 1, as on the device
        assert torch.equal(packed(rows[:1]), torch.cat([mean.flatten(1), std.flatten(1)], dim=1))
    assert out.shape == (6, packed.out_dim) and not torch.equal(out[0], out[1])


def test_device_planner_keeps_the_agents_samples():
    from export import ExportError, frames
    from tools.usecases.tdmpc.export import device_planner, packed_floats

    shipped = PlannerConfig()  # latent 32, horizon 3: 32 samples need 134 floats, more than a frame's 64
    assert packed_floats(32, 1, shipped) == 134 > frames.MAX_FLOATS
    assert device_planner(TDMPCAgent(AgentConfig()), shipped) == shipped  # a multi-part request, not 8 samples
    with pytest.raises(ExportError, match="largest request"):
        device_planner(TDMPCAgent(AgentConfig(latent=8, hidden=8)), PlannerConfig(samples=6000, elites=8))


HIL_PLAN = PlannerConfig(horizon=2, samples=32, iterations=2, elites=8)  # the agent's 32 samples: 74 floats in


@pytest.fixture(scope="module")
def planner_step_bundle(tmp_path_factory):
    from tools.usecases.tdmpc.export import export_packed_step

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("hil") / "step"
    export_packed_step(tiny_agent(3), HIL_PLAN, out, ("x86_64", "cortex-a72"), n_parity=40)
    return out


@pytest.mark.parametrize("target", ["x86_64", "cortex-a72"])
def test_lockstep_planning_on_the_device_returns_the_hosts(planner_step_bundle, target):
    from tools.usecases.tdmpc.hil import FIDELITY, planning_hil

    r = planning_hil(tiny_agent(3), HIL_PLAN, planner_step_bundle, target, episodes=2)
    assert r.samples == 32 and r.device_steps == 2 * 200 * HIL_PLAN.iterations  # every MPPI iteration on the device
    assert r.max_return_diff <= FIDELITY and r.ok, r.to_dict()
    assert len(set(r.host_returns)) == 2  # two different episodes, compared one by one
    with pytest.raises(ValueError, match="packs"):  # a bundle made for another sample count is refused
        planning_hil(tiny_agent(3), FAST_PLAN, planner_step_bundle, target, episodes=1)


def test_packed_planner_step_verifies_in_the_armv7_stub_under_qemu(tmp_path):
    from tools.usecases.tdmpc.export import PACKED_ENV_ID, export_packed_step

    manifest = export_packed_step(tiny_agent(3), FAST_PLAN, tmp_path / "step", ("cortex-a7",), n_parity=40)
    v = manifest.verifications()["cortex-a7"]
    assert v["status"] == "verified", v  # executed by the runtime-free stub under qemu-arm, compared with onnxruntime
    assert "qemu" in v["method"] and v["n"] == 40 and v["max_abs_err"] <= 1e-4
    spec = manifest.controller_spec
    assert spec.env_id == PACKED_ENV_ID and (spec.obs_dim, spec.act_dim) == (26, 4)
    assert manifest.onnx["parity_max_abs_err"] <= 1e-4


def test_pruned_agent_plans_through_prune_api():
    agent = tiny_agent()
    g = find_groups(agent, example_inputs(TINY))
    objective = planning_objective(FAST_PLAN, episodes=2)
    result = prune(agent, g, 0.5, objective, method="uniform", metric="l1")
    assert result.search.keep_fraction <= 0.5
    assert set(result.search.component_coefficients) == set(COMPONENTS)
    assert np.isfinite(planning_return(result.model, FAST_PLAN, 2, 0).mean)


def test_agent_file_round_trip_and_bad_file(tmp_path):
    agent = tiny_agent()
    path = tmp_path / "agent.pt"
    save_agent(path, agent, FAST_PLAN, {"note": "test"})
    loaded = load_agent(path)
    assert loaded.planner == FAST_PLAN and loaded.agent.cfg == TINY
    for a, b in zip(loaded.agent.parameters(), agent.parameters()):
        assert torch.equal(a, b)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ControllerError, match="bad.pt"):
        load_agent(bad)


def test_shipped_agent_loads_and_swings_up():
    loaded = load_agent()  # weights_only=True inside
    assert loaded.path.stat().st_size < 1_000_000
    stats = planning_return(loaded.agent, loaded.planner, episodes=3, start=0)
    assert np.all(np.isfinite(stats.returns))
    # a planner that never swings up scores about -1000 or worse; the judge's -200 needs 100 episodes
    assert stats.mean > -600
    with torch.no_grad():
        torque = PolicyPath(loaded.agent)(torch.zeros(1, 3))
    assert torque.shape == (1, 1) and float(torque.abs()) <= 2.0


def test_bench_cli_tdmpc_quick_writes_the_report(tmp_path, capsys):
    import json

    from tools.cli import main

    out = tmp_path / "report"
    rc = main(
        [
            "bench",
            "--controller",
            "tdmpc",
            "--methods",
            "uniform-l1",
            "--keep",
            "0.5",
            "--quick",
            "--json",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["controller"] == "tdmpc" and printed["out"] == str(out)
    report = json.loads((out / "report.json").read_text())
    assert [(r["method"], r["keep"]) for r in report["rows"]] == [("uniform-l1", 0.5)]
    assert set(report["rows"][0]["component_coefficients"]) == set(COMPONENTS)
    step = report["export"]["unpruned"]["planner_step"]
    assert step["ort_max_abs_err"] <= 1e-4 and step["tvm"]["x86_64"]["max_abs_err_vs_onnxruntime"] <= 1e-4
    assert report["export"]["unpruned"]["policy_bundle"]["verifications"]["x86_64"]["status"] == "verified"
    native = report["device"]["targets"]["x86_64"]  # the packed planner step, timed by the firmware stub natively
    assert not native["emulated"] and native["agents"]["unpruned"]["verification"] == "verified"
    assert native["agents"]["unpruned"]["median_us"] > 0
    # the agent's own planner on the device: 32 samples, 134 floats in, sent as a multi-part request
    assert report["device"]["planner"]["samples"] == report["device"]["agent_planner_samples"] == 32
    assert report["device"]["inputs"] == 134
    assert "## Planner step on the device" in (out / "report.md").read_text()
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "pruning.png", "bundles"}
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no temp folder left beside it


def test_bench_cli_tdmpc_refuses_unknown_methods(tmp_path, capsys):
    from tools.cli import main

    rc = main(["bench", "--controller", "tdmpc", "--methods", "gd,global", "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "global" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_step_bench_checks_every_runtime_then_writes_the_table_and_json(tmp_path, capsys):
    import json

    from tools.usecases.tdmpc.step_bench import main

    agent_file = tmp_path / "agent.pt"
    save_agent(agent_file, tiny_agent(5), HIL_PLAN)
    out = tmp_path / "step.json"
    argv = ["--agent", str(agent_file), "--targets", "x86_64", "--check", "6", "--rounds", "1", "--calls", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["runtime"]: r for r in report["rows"]}
    assert set(rows) == {"torch", "onnxruntime", "tvm x86_64 scheduled", "tvm x86_64 fused"}
    assert rows["tvm x86_64 scheduled"]["scheduled_kernels"] > 0 and rows["tvm x86_64 fused"]["scheduled_kernels"] == 0
    for r in rows.values():
        assert r["median_us"] > 0 and (r["max_abs_err_vs_torch"] or 0) <= report["tolerance"]
    assert rows["onnxruntime"]["ratio_to_onnxruntime"] == 1.0 and report["inputs_checked"] == 6
    assert "/ onnxruntime" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*argv[:2], "--targets", "cortex-a7"])  # not runnable here: refused before any work


@pytest.mark.parametrize("argv", [["--targets", "no-such-board"], ["--episodes", "0"], ["--agent", "/nonexistent.pt"]])
def test_hil_cli_refuses_bad_flags_before_any_work(argv, capsys):
    from tools.usecases.tdmpc.hil import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err
