"""Fixtures of the tools/ tests: the command line run in a fresh interpreter, and its one-line error contract;
SB3 models saved as zips and a zoo of controllers as other libraries build them, saved in every format
(the readers' tests and the zoo end to end share them)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

Cli = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def cli() -> Cli:
    """cli(*args) runs ``python -m tools.cli *args`` in a new interpreter and returns the finished process."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, timeout=300)

    return run


@pytest.fixture(scope="session")
def assert_one_line_error() -> Callable[..., None]:
    """assert_one_line_error(proc, *fragments): exit 2, nothing on stdout, one line on stderr holding every fragment."""

    def check(proc: subprocess.CompletedProcess, *fragments: str) -> None:
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, f"expected one line, got: {proc.stderr}"
        assert "Traceback" not in proc.stderr
        for fragment in fragments:
            assert fragment in lines[0]

    return check


@pytest.fixture(scope="session")
def sb3_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, object]]:
    """sb3_models(name) -> (zip path, the SB3 model it was saved from); untrained Pendulum-v1 models, built once."""
    import torch
    from stable_baselines3 import A2C, DDPG, PPO, SAC, TD3

    torch.set_num_threads(1)
    small = lambda: dict(net_arch=[32, 32])  # fresh each time: SB3 adds keys (use_sde) to the dict it is given
    recipes: dict[str, Callable[[], object]] = {
        "sac": lambda: SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=small(), seed=0),
        "sac_elu": lambda: SAC(
            "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 24], activation_fn=torch.nn.ELU), seed=0
        ),
        "sac_gsde": lambda: SAC("MlpPolicy", "Pendulum-v1", policy_kwargs=small(), use_sde=True, seed=0),
        "td3": lambda: TD3("MlpPolicy", "Pendulum-v1", policy_kwargs=small(), seed=0),
        "td3_tanh": lambda: TD3(
            "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[16], activation_fn=torch.nn.Tanh), seed=0
        ),
        "ddpg": lambda: DDPG("MlpPolicy", "Pendulum-v1", policy_kwargs=small(), seed=0),
        "ppo": lambda: PPO("MlpPolicy", "Pendulum-v1", seed=0),
        "ppo_pi_vf": lambda: PPO(
            "MlpPolicy",
            "Pendulum-v1",
            policy_kwargs=dict(net_arch=dict(pi=[16, 24], vf=[8]), activation_fn=torch.nn.GELU),
            seed=0,
        ),
        "ppo_gsde": lambda: PPO("MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32]), use_sde=True, seed=0),
        "ppo_gsde_squash": lambda: PPO(
            "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32], squash_output=True), use_sde=True, seed=0
        ),
        "a2c": lambda: A2C(
            "MlpPolicy", "Pendulum-v1", policy_kwargs=dict(net_arch=[32, 32], activation_fn=torch.nn.SiLU), seed=0
        ),
    }
    folder = tmp_path_factory.mktemp("sb3_models")
    built: dict[str, tuple[Path, object]] = {}

    def get(name: str) -> tuple[Path, object]:
        if name not in built:
            model = recipes[name]()
            path = folder / f"{name}.zip"
            model.save(path)  # type: ignore[attr-defined]
            if "ppo" in name or "a2c" in name:  # an untrained Gaussian mean sits near 0: make it reach the clip
                _spread_head(model)
                model.save(path)  # type: ignore[attr-defined]
            built[name] = (path, model)
        return built[name]

    return get


def _spread_head(model: object) -> None:
    """Scale the action head so the mean leaves [-2, 2] for some observations (the clip is then exercised)."""
    import torch

    head = model.policy.action_net  # type: ignore[attr-defined]
    with torch.no_grad():
        head.weight.copy_(3.0 * torch.sign(head.weight))  # ortho_init gives the head gain 0.01: means stay near 0
        head.bias.fill_(0.5)


# ---------------------------------------------------------------- the zoo: controllers as people train them
# Small, untrained, seeded; each family with the parts its library keeps next to the actor (critics, log-std
# heads and parameters) so the graph import must drop them. Factories are module-level functions, so a test
# can name them as ``f"{make_agent.__module__}:make_agent"``.

OBS, ACT = 3, 1


class Agent(nn.Module):
    """CleanRL's ppo_continuous_action Agent; forward returns (action mean, value) as users add for export."""

    def __init__(self) -> None:
        super().__init__()
        self.critic = nn.Sequential(nn.Linear(OBS, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
        self.actor_mean = nn.Sequential(nn.Linear(OBS, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, ACT))
        self.actor_logstd = nn.Parameter(torch.zeros(1, ACT))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor_mean(x), self.critic(x)


class EmpiricalNormalization(nn.Module):
    """rsl_rl's normaliser: running mean/var buffers, ``(x - mean) / (std + eps)``."""

    _mean: torch.Tensor
    _var: torch.Tensor
    _std: torch.Tensor

    def __init__(self, n: int, eps: float = 1e-2) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("_mean", torch.randn(1, n))
        self.register_buffer("_var", torch.rand(1, n) + 0.5)
        self.register_buffer("_std", self._var.sqrt())
        self.register_buffer("count", torch.tensor(100))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean) / (self._std + self.eps)


class ActorCritic(nn.Module):
    """rsl_rl's ActorCritic with its observation normaliser; the action is ``act_inference``."""

    def __init__(self) -> None:
        super().__init__()
        self.actor_obs_normalizer = EmpiricalNormalization(OBS)
        self.actor = nn.Sequential(nn.Linear(OBS, 32), nn.ELU(), nn.Linear(32, 32), nn.ELU(), nn.Linear(32, ACT))
        self.critic = nn.Sequential(nn.Linear(OBS, 32), nn.ELU(), nn.Linear(32, 1))
        self.std = nn.Parameter(torch.ones(ACT))

    def act_inference(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(self.actor_obs_normalizer(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # as in rsl_rl


class PolicyExporter(nn.Module):
    """rsl_rl's exporter pattern: a module whose forward is the policy's ``act_inference``."""

    def __init__(self, policy: ActorCritic) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.policy.act_inference(x)


class RunningNorm(nn.Module):
    """SimBa's running observation normaliser, clipped."""

    mean: torch.Tensor
    var: torch.Tensor

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.randn(n))
        self.register_buffer("var", torch.rand(n) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp((x - self.mean) / torch.sqrt(self.var + 1e-8), -5.0, 5.0)


class ResidualBlock(nn.Module):
    """``x + MLP(LayerNorm(x))`` (SimBa)."""

    def __init__(self, h: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(h)
        self.fc1 = nn.Linear(h, 4 * h)
        self.fc2 = nn.Linear(4 * h, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.relu(self.fc1(self.ln(x))))


class SimBa(nn.Module):
    """SimBa actor: normaliser, Linear to width, residual blocks, final LayerNorm, tanh head."""

    def __init__(self, h: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.norm = RunningNorm(OBS)
        self.embed = nn.Linear(OBS, h)
        self.blocks = nn.ModuleList([ResidualBlock(h) for _ in range(blocks)])
        self.ln = nn.LayerNorm(h)
        self.head = nn.Linear(h, ACT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.norm(x))
        for block in self.blocks:
            x = block(x)
        return torch.tanh(self.head(self.ln(x)))


class NormedLinear(nn.Linear):
    """TD-MPC2's NormedLinear: Linear -> LayerNorm -> Mish."""

    def __init__(self, i: int, o: int) -> None:
        super().__init__(i, o)
        self.ln = nn.LayerNorm(o)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.ln(super().forward(x)))


class TdmpcPolicy(nn.Module):
    """TD-MPC2's policy prior: NormedLinear blocks, a head giving (mu, log_std); the action is tanh(mu)."""

    def __init__(self, h: int = 32) -> None:
        super().__init__()
        self.pi = nn.Sequential(NormedLinear(OBS, h), NormedLinear(h, h), nn.Linear(h, 2 * ACT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu, log_std = self.pi(x).chunk(2, dim=-1)
        return torch.tanh(mu)


class SacActor(nn.Module):
    """An SAC actor: ``2 * tanh(mu(latent))`` for Pendulum's [-2, 2]; the ``log_std`` head is unused."""

    def __init__(self, h: int = 64) -> None:
        super().__init__()
        self.latent_pi = nn.Sequential(nn.Linear(OBS, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.mu = nn.Linear(h, ACT)
        self.log_std = nn.Linear(h, ACT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * torch.tanh(self.mu(self.latent_pi(x)))


def _seeded(cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return cls().eval()


def make_agent() -> nn.Module:
    """Factory: the CleanRL Agent."""
    return _seeded(Agent)


def make_actor_critic() -> nn.Module:
    """Factory: the rsl_rl ActorCritic."""
    return _seeded(ActorCritic)


def make_simba() -> nn.Module:
    """Factory: the SimBa actor."""
    return _seeded(SimBa)


def make_tdmpc() -> nn.Module:
    """Factory: the TD-MPC2 policy prior."""
    return _seeded(TdmpcPolicy)


def make_sac_actor() -> nn.Module:
    """Factory: the SAC actor."""
    return _seeded(SacActor)


@dataclass
class ZooEntry:
    """One family: the original module, what to call for the action, and the files it was saved as."""

    family: str
    model: nn.Module
    factory: str  # package.module:function
    method: str | None  # the action method for the state-dict format (None: forward)
    exported: nn.Module  # what TorchScript, torch.export and ONNX were given (forward = the action path)
    dead: tuple[str, ...]  # names that must not survive in the graph
    files: dict[str, Path] = field(default_factory=dict)
    torchscript_by: str = ""

    def action(self, obs: torch.Tensor) -> torch.Tensor:
        """The original's action on obs."""
        with torch.no_grad():
            out = getattr(self.model, self.method)(obs) if self.method else self.model(obs)
        return out[0] if isinstance(out, tuple) else out


ZOO_FAMILIES = ("cleanrl_agent", "rsl_rl_actor_critic", "simba", "tdmpc2", "sac_actor")


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ZooEntry]:
    """Every zoo family saved as state dict, TorchScript, torch.export .pt2 and ONNX (built once)."""
    import warnings

    folder = tmp_path_factory.mktemp("zoo")
    here = make_agent.__module__
    recipes = {
        "cleanrl_agent": (make_agent, None, ("critic", "logstd")),
        "rsl_rl_actor_critic": (make_actor_critic, "act_inference", ("critic", "std.", "count")),
        "simba": (make_simba, None, ()),
        "tdmpc2": (make_tdmpc, None, ("log_std",)),
        "sac_actor": (make_sac_actor, None, ("log_std",)),
    }
    example = torch.randn(4, OBS, generator=torch.Generator().manual_seed(1))
    entries = {}
    for family, (make, method, dead) in recipes.items():
        model = make()
        exported = PolicyExporter(model).eval() if method else model  # type: ignore[arg-type]
        entry = ZooEntry(family, model, f"{here}:{make.__name__}", method, exported, dead)
        torch.save(model.state_dict(), folder / f"{family}.pt")
        entry.files["state-dict"] = folder / f"{family}.pt"
        program = torch.export.export(exported, (example,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
        torch.export.save(program, folder / f"{family}.pt2")
        entry.files["torch-export"] = folder / f"{family}.pt2"
        try:
            scripted = torch.jit.script(exported)
            entry.torchscript_by = "torch.jit.script"
        except Exception:  # noqa: BLE001 - NormedLinear's super().forward does not script: trace it, as users do
            scripted = torch.jit.trace(exported, (example,))
            entry.torchscript_by = "torch.jit.trace"
        torch.jit.save(scripted, str(folder / f"{family}.ts"))
        entry.files["torchscript"] = folder / f"{family}.ts"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                exported,
                (example,),
                str(folder / f"{family}.onnx"),
                dynamo=False,
                input_names=["obs"],
                dynamic_axes={"obs": {0: "batch"}},
                opset_version=17,
            )
        entry.files["onnx"] = folder / f"{family}.onnx"
        entries[family] = entry
    return entries


@pytest.fixture
def zoo_obs() -> torch.Tensor:
    """1000 observations, seeded, wide enough to reach the normalisers' clips."""
    return 3.0 * torch.randn(1000, OBS, generator=torch.Generator().manual_seed(7))
