"""Load any controller file the tool reads: the native format or one trained elsewhere."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.fx as fx
from torch import nn

from prune import save_pruned
from tools.controllers.formats import check_whole_zip, detect_format, load_foreign, spec_from_env
from tools.controllers.graph_ops import ACTIVATION_FUNCTIONS
from tools.controllers.native import (
    ACTIVATIONS,
    Controller,
    brief,
    build_mlp,
    default_controller_path,
    load_native,
    save_controller,
)
from tools.controllers.source import FORMATS, ControllerSource
from tools.errors import ControllerError


def load_controller(
    path: str | Path | None = None,
    format: str | None = None,
    env: str | None = None,
    factory: str | None = None,
    clip_actions: bool = False,
    obs_norm: str | Path | None = None,
) -> Controller:
    """Load a controller file, native or foreign (tools.controllers.formats); problems raise ControllerError naming the file.

    Whatever the format, the result has finite weights and fits its env (observation and action sizes).
    """
    path = default_controller_path() if path is None else Path(path)
    if not path.exists():
        raise ControllerError(f"{path}: no such file")
    if path.is_dir():
        raise ControllerError(f"{path}: is a directory, expected a controller file")
    if not path.is_file():
        raise ControllerError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise ControllerError(f"{path}: empty file, not a controller")
    check_whole_zip(path)
    if format is not None and format not in FORMATS:
        raise ControllerError(f"--format {format!r}: expected one of {', '.join(FORMATS)}")
    if factory is not None:  # --factory says what the file is: a state dict for the module the factory builds
        if format not in (None, "state-dict"):
            raise ControllerError(f"--factory applies to --format state-dict, not --format {format}")
        format = "state-dict"
    try:
        format = format or detect_format(path)
        if format != "controller":
            return load_foreign(
                path, format, env, factory, clip_actions, obs_norm=None if obs_norm is None else Path(obs_norm)
            )
        if obs_norm is not None:
            raise ControllerError(
                f"--obs-norm applies to a controller trained elsewhere; {path} is a prune-and-export "
                "controller file (its normalisation, if any, is in its weights)"
            )
        controller = load_native(path)
    except ControllerError:
        raise
    except Exception as e:  # noqa: BLE001 - the readers of six formats (torch, onnx, zip, SB3) raise anything on a bad file
        raise ControllerError(
            f"{path}: cannot be read as {format or 'a controller'} ({type(e).__name__}: {brief(e)})"
        ) from e
    if env is not None and env != controller.spec.env_id:
        raise ControllerError(
            f"{path}: a controller for {controller.spec.env_id}, not --env {env}; drop --env or pass the matching controller"
        )
    check_fits_env(controller)
    return controller


def check_fits_env(controller: Controller) -> None:
    """Refuse a native controller whose observation/action sizes are not its env's (it could not run there)."""
    spec, where = controller.spec, controller.path
    try:
        env = spec_from_env(spec.env_id)
    except ControllerError as e:
        raise ControllerError(
            f"{where}: a controller for {spec.env_id}, an env this machine cannot make ({str(e).partition(': ')[2]})"
        ) from e
    if (spec.obs_dim, spec.act_dim) != (env.obs_dim, env.act_dim):
        raise ControllerError(
            f"{where}: the controller takes {spec.obs_dim} observations and gives {spec.act_dim} actions, "
            f"env {spec.env_id} gives {env.obs_dim} and takes {env.act_dim}; it cannot run on that env"
        )


def load_source(source: ControllerSource) -> Controller:
    """The controller ``source`` names."""
    return load_controller(source.path, source.format, source.env, source.factory, source.clip_actions, source.obs_norm)


def is_foreign(source: ControllerSource) -> bool:
    """Whether ``source`` names a file in a format other than the native controller file."""
    return source.path is not None and (source.format or detect_format(Path(source.path))) != "controller"


def native_copy(source: ControllerSource, path: Path) -> Path | None:
    """For a foreign controller file: write its graph as a native controller file at path (else None).

    Only a graph that is a plain MLP (Linear/activation pairs, a Linear head, the clip to the action box)
    has a native form; any other graph is a ControllerError naming what it holds.
    """
    if not is_foreign(source):
        return None
    controller = load_source(source)
    module, arch = plain_mlp(controller)
    save_controller(path, module, controller.spec, arch)
    return path


def bench_copy(source: ControllerSource, path: Path) -> Path | None:
    """For a foreign controller file: the copy the bench runs (else None), written beside ``path``.

    A plain MLP becomes the native file at ``path`` (:func:`native_copy`); any other graph (a normaliser, LayerNorm,
    residual sums) is written as prune writes a pruned graph: ``<stem>.pt2`` with its state dict and a
    ``.widths.json`` naming its env, which :func:`load_controller` reads back. Returns the file to load.
    """
    if not is_foreign(source):
        return None
    controller = load_source(source)
    try:
        module, arch = plain_mlp(controller)
    except ControllerError:
        example = torch.as_tensor(controller.spec.sample_observations(8, 0))
        summary = {
            "env_id": controller.spec.env_id,
            "controller": str(controller.path),
            "sha256": controller.sha256,
            **{k: controller.architecture[k] for k in ("obs_norm", "notes") if k in controller.architecture},
        }
        return Path(save_pruned(controller.module, example, path, {}, extra={"summary": summary}).program)
    save_controller(path, module, controller.spec, arch)
    return path


def plain_mlp(controller: Controller) -> tuple[nn.Sequential, dict]:
    """A foreign controller's graph as the native MLP (tools.controllers.native.build_mlp) and its architecture record.

    The graph must be Linear/activation pairs and a Linear head, followed by a map to the action box that
    computes what the native ``ClipOutput`` or ``BoundedOutput`` computes (checked on sampled observations).
    """
    gm = controller.module
    where = controller.path
    if not isinstance(gm, fx.GraphModule):
        raise ControllerError(f"{where}: not a graph")
    names = {fn: fn.__name__ for fn in ACTIVATION_FUNCTIONS if fn.__name__ in ACTIVATIONS}
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
    linear_at = [
        i
        for i, n in enumerate(nodes)
        if n.op == "call_module" and isinstance(gm.get_submodule(str(n.target)), nn.Linear)
    ]
    if len(linear_at) < 2:
        raise ControllerError(
            f"{where}: not a plain MLP (fewer than two Linear layers); only a Linear/activation chain "
            "has a native controller file"
        )
    linears: list[nn.Linear] = []
    activations: list[str] = []
    for node in nodes[: linear_at[-1] + 1]:
        mod = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        if isinstance(mod, nn.Linear) and len(linears) == len(activations):
            linears.append(mod)
        elif (
            node.op == "call_function"
            and node.target in names
            and not node.kwargs
            and len(node.args) == 1
            and len(activations) == len(linears) - 1
        ):
            activations.append(names[node.target])
        else:
            raise ControllerError(
                f"{where}: not a plain MLP (node {node.name!r}); only a Linear/activation chain "
                "has a native controller file"
            )
    if len(set(activations)) != 1:
        raise ControllerError(f"{where}: not a plain MLP (activations {activations}: one kind throughout)")
    hidden = [m.out_features for m in linears[:-1]]
    obs = torch.as_tensor(controller.spec.sample_observations(256, 0))
    with torch.no_grad():
        expected = gm(obs)
        for output in ("clip", "bounded"):
            module = build_mlp(controller.spec, hidden, activations[0], output)
            for dst, src in zip([m for m in module if isinstance(m, nn.Linear)], linears):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias if src.bias is not None else torch.zeros_like(dst.bias))
            if float((module(obs) - expected).abs().max()) <= 1e-5 * max(1.0, float(expected.abs().max())):
                arch = {"kind": "mlp", "hidden": hidden, "activation": activations[0]}
                return module.eval(), {**arch, "output": "clip"} if output == "clip" else arch
    raise ControllerError(
        f"{where}: not a plain MLP (what follows the head is neither the clip to the action box "
        "nor tanh rescaled to it)"
    )
