"""Any controller file in, one traced graph out: every format becomes a canonical ``torch.fx.GraphModule``.

Each reader produces something torch can run, which is then captured by ``torch.export`` (non-strict,
batch axis dynamic) and rewritten by :func:`tools.controllers.graph_ops.canonicalize`, so one set of
rules decides what the controller is (what reaches the action) and which ops are supported. Every
format goes through the same aten-level graph on purpose: ``.pt2``, TorchScript (via TS2EPConverter) and
onnx2torch output are aten programs anyway, and ``torch.fx.symbolic_trace`` of a user module would give
a second dialect (``F.linear``, methods, Python control flow) to canonicalise:

- ``torch-export`` (``.pt2``): ``torch.export.load`` gives the program itself. It is *not*
  ``weights_only``-safe: it unpickles (``weights_only=False``) pickled weights and constants, opaque
  objects, and the sample inputs when a weights-only load of them fails. :func:`check_pt2_pickles`
  therefore refuses any member that a weights-only load cannot read before torch.export.load runs.
- ``state-dict`` + ``factory`` (``package.module:function``, user code that runs by nature): the
  factory's module with weights from ``torch.load(weights_only=True)``; ``method`` names the method
  that returns the action (``act_inference``, ``actor_mean``...) when ``forward`` does not.
- ``torchscript``: translated from its inlined TorchScript graph op by op into an ExportedProgram by
  ``torch._export.converter.TS2EPConverter`` (PyTorch's TorchScript-to-export converter), not read by
  module order. ``torch.jit.load`` runs no Python, but it does run the file's TorchScript.
- ``onnx``: simplified by ``onnxsim`` (constant and shape folding: the split points of a ``chunk`` that the
  TorchScript-based exporter computes from ``Shape`` ops become constants), then ``onnx2torch`` (a
  maintained converter) gives a GraphModule, then exported like the rest; onnxruntime is the reference.
  onnx2torch imports torchvision at import time for two detection ops (NMS, RoiAlign) controllers
  never use; where torchvision cannot be imported (the CPU-only torch this project pins has no
  matching torchvision wheel), those two ops are stubbed to raise.
- ``sb3``: :func:`tools.controllers.sb3_zip.read_sb3_zip` (nothing unpickled), optionally preceded by
  the observation normaliser.

Every result is checked against the original on sampled observations before it is returned, and its
ops against :data:`tools.controllers.graph_ops.SUPPORTED`.
"""

from __future__ import annotations

import importlib
import io
import json
import operator
import sys
import types
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.utils._pytree as pytree
from torch import nn

from tools.controllers.graph_ops import canonicalize, check_ops
from tools.controllers.obs_norm import ObsNorm
from tools.controllers.sb3_zip import read_sb3_zip
from tools.errors import ControllerError

FORMATS = ("torch-export", "state-dict", "torchscript", "onnx", "sb3")
CHECK_SAMPLES = 256
MATCH_TOL = 1e-5


def to_graph(
    path: Path,
    fmt: str,
    *,
    obs_dim: int | None = None,
    factory: str | None = None,
    method: str | None = None,
    output: int | str | None = 0,
    obs_norm: ObsNorm | None = None,
    check_obs: torch.Tensor | None = None,
    env_spaces: tuple[Any, Any] | None = None,
    obs_dim_hint: str = "",
) -> fx.GraphModule:
    """The controller in ``path`` (format ``fmt``) as a canonical GraphModule computing its action.

    ``output`` picks the action among several outputs: an index into the returned tuple (a dict's values
    in their order; 0 by default), or a name (a returned dict's key, an ONNX output's name);
    ``method`` the method computing it (state dict + factory). ``obs_dim`` is needed where the file
    does not say it (state dict, TorchScript). ``check_obs`` (default: seeded normal samples) is what
    the result is compared with the original on. ``env_spaces`` (gymnasium Boxes) give an SB3 zip the env's
    exact bounds; ``obs_dim_hint`` ends the message when the file's observation size is not ``obs_dim``
    (e.g. "env X gives 2; pass --env ..."). ``gm.meta["import"]`` says how it was read (``gm.meta["sb3"]``:
    what was read from an SB3 zip).
    """
    path = Path(path)
    if fmt == "torch-export":
        read = _from_program(path)
    elif fmt == "state-dict":
        read = _from_factory(path, factory, method)
    elif fmt == "torchscript":
        read = _from_torchscript(path, obs_dim)
    elif fmt == "onnx":
        read = _from_onnx(path, output)
    elif fmt == "sb3":
        policy = read_sb3_zip(path, env_spaces)
        if obs_dim is not None and policy.obs_dim != obs_dim:
            _wrong_obs_dim(path, policy.obs_dim, obs_dim, obs_dim_hint)
        actor = policy.with_obs_norm(obs_norm).eval()
        read = _Read(actor, actor, "torch.export of the actor read from the zip (nothing unpickled)", policy.obs_dim)
        read.sb3 = policy.summary()
    else:
        raise ControllerError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if obs_dim is not None and read.obs_dim is not None and read.obs_dim != obs_dim:
        _wrong_obs_dim(path, read.obs_dim, obs_dim, obs_dim_hint)
    obs_dim = obs_dim or read.obs_dim
    if obs_dim is None:
        raise ControllerError(f"{path}: cannot tell how many observations the model takes; pass obs_dim")
    obs = check_obs if check_obs is not None else _samples(obs_dim)
    _check_deterministic(path, read.reference, obs[:64])
    module = read.module
    gm = module if read.traced and isinstance(module, fx.GraphModule) else _export(path, module, obs_dim)
    prefix = "model." if isinstance(module, ActionMethod) else ""
    index = _output_index(path, gm, output if read.kept_output is None else read.kept_output, read.output_names)
    gm = canonicalize(gm, output=index, prefix=prefix)
    check_ops(gm, str(path))
    _check_parity(path, gm, read.reference, obs, output, index)
    gm.meta["import"] = {
        "format": fmt,
        "traced_by": read.traced_by,
        "obs_dim": obs_dim,
        "output": output,
        "method": method,
    }
    if read.sb3 is not None:
        gm.meta["sb3"] = read.sb3
    return gm


def _wrong_obs_dim(path: Path, found: int, expected: int, hint: str) -> None:
    """Refuse a model whose observation size is not the one asked for."""
    raise ControllerError(f"{path}: the model takes {found} observations, " + (hint or f"not {expected}"))


# ---------------------------------------------------------------- readers


@dataclass
class _Read:
    """What a reader gives: a module to trace (or already traced), the original to compare with, how it was read."""

    module: nn.Module
    reference: Any  # callable on a batch of observations: the original controller
    traced_by: str
    obs_dim: int | None = None
    traced: bool = False  # module is already an aten-level GraphModule (a program's module)
    output_names: list[str] | None = None  # ONNX output names, in order
    kept_output: str | None = None  # ONNX: the one output the module computes (the others were dropped before tracing)
    sb3: dict | None = None  # an SB3 zip: what was read (Sb3Policy.summary)


def _output_index(path: Path, gm: fx.GraphModule, output: int | str | None, names: list[str] | None) -> int | None:
    """The position of the action among the graph's flat outputs; a name is looked up in the dict keys / ONNX names."""
    if not isinstance(output, str):
        return output
    names = names or _dict_output_keys(gm)
    if not names or output not in names:
        raise ControllerError(
            f"{path}: output {output!r}: the model's outputs are "
            f"{', '.join(map(repr, names)) if names else 'not named (give an index)'}"
        )
    return names.index(output)


def _dict_output_keys(gm: fx.GraphModule) -> list[str] | None:
    """The keys of a traced program's dict output (one tensor per key), from its pytree output spec."""
    spec = getattr(getattr(gm.graph._codegen, "pytree_info", None), "out_spec", None)
    while spec is not None and spec.type in (tuple, list) and spec.num_children == 1:
        spec = spec.children_specs[0]
    if spec is None or spec.type is not dict or spec.num_leaves != len(spec.context):
        return None
    return [str(k) for k in spec.context]


def _placeholder_width(gm: fx.GraphModule) -> int | None:
    """The feature size of an exported program's (first) input, from its recorded example value."""
    for node in gm.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" else None
        if isinstance(val, torch.Tensor) and val.dim() >= 1:
            return int(val.shape[-1])
    return None


def _from_program(path: Path) -> _Read:
    check_pt2_pickles(path)
    try:
        program = torch.export.load(str(path))
    except Exception as e:  # noqa: BLE001 - the loader raises many types for a bad archive
        raise ControllerError(f"{path}: not a torch.export program ({str(e).strip().splitlines()[0]})") from e
    gm = program.module()
    batch = _placeholder_batch(gm)
    reference = gm if batch is None else _in_batches(gm, batch)
    return _Read(
        gm,
        reference,
        "torch.export.load (the saved program, archive checked for pickles first)",
        _placeholder_width(gm),
        True,
    )


def _placeholder_batch(gm: fx.GraphModule) -> int | None:
    """The batch size a program was exported with when it is static (its guards then refuse any other)."""
    for node in gm.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" else None
        if isinstance(val, torch.Tensor) and val.dim() >= 2:
            return val.shape[0] if isinstance(val.shape[0], int) else None
    return None


def _in_batches(fn: Any, batch: int) -> Any:
    """fn applied to obs in slices of its static batch size (the last one padded), results concatenated."""

    def call(obs: torch.Tensor) -> Any:
        outs = []
        for start in range(0, len(obs), batch):
            part = obs[start : start + batch]
            padded = torch.cat([part, part[-1:].expand(batch - len(part), -1)]) if len(part) < batch else part
            outs.append(pytree.tree_map(lambda t, n=len(part): t[:n], fn(padded)))
        return pytree.tree_map(lambda *ts: torch.cat(ts), outs[0], *outs[1:])

    return call


def check_pt2_pickles(path: Path) -> None:
    """Refuse a .pt2 archive with a member torch.export.load would unpickle beyond weights-only."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise ControllerError(f"{path}: not a torch.export archive (not a zip)") from e
    with archive:
        for name in archive.namelist():
            inner = name.split("/", 1)[-1]
            risky = inner.startswith("data/sample_inputs/") or "/custom_obj_" in name or "/opaque_obj_" in name
            if inner.endswith("_config.json") and inner.startswith(("data/weights/", "data/constants/")):
                config = json.loads(archive.read(name)).get("config", {})
                for fqn, meta in config.items():
                    if meta.get("use_pickle") or str(meta.get("path_name", "")).startswith(
                        ("custom_obj", "opaque_obj")
                    ):
                        _weights_only(path, archive, name.rsplit("/", 1)[0] + "/" + str(meta["path_name"]), fqn)
            if risky:
                _weights_only(path, archive, name, inner)


def _weights_only(path: Path, archive: zipfile.ZipFile, member: str, what: str) -> None:
    try:
        torch.load(io.BytesIO(archive.read(member)), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure means torch.export.load would unpickle freely
        raise ControllerError(
            f"{path}: member {member!r} ({what}) is a pickle a weights-only load refuses "
            f"({str(e).strip().splitlines()[0][:120]}); torch.export.load would unpickle it "
            "with weights_only=False, so the file is not loaded"
        ) from e


def _from_factory(path: Path, ref: str | None, method: str | None) -> _Read:
    if not ref:
        raise ControllerError(
            f"{path}: a state dict holds no architecture; pass --factory package.module:function "
            "(a function returning the untrained nn.Module)"
        )
    module_name, sep, func_name = ref.partition(":")
    if not sep or not module_name or not func_name:
        raise ControllerError(f"--factory {ref!r}: expected package.module:function")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ControllerError(f"--factory {ref!r}: {e}") from e
    if not callable(func):
        raise ControllerError(f"--factory {ref!r}: {func_name} is a {type(func).__name__}, not a function")
    try:
        model = func()
    except Exception as e:  # noqa: BLE001 - user code: a factory needing arguments raises TypeError, others anything
        raise ControllerError(
            f"--factory {ref!r}: calling it with no arguments failed ({type(e).__name__}: {_first_line(e)})"
        ) from e
    if not isinstance(model, nn.Module):
        raise ControllerError(f"--factory {ref!r}: returned {type(model).__name__}, expected an nn.Module")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch's unpickler raises anything (UnpicklingError, EOFError...) on garbage
        raise ControllerError(
            f"{path}: not a state dict that loads with weights_only=True ({type(e).__name__}: {_first_line(e)})"
        ) from e
    if not isinstance(state, dict):
        raise ControllerError(f"{path}: holds a {type(state).__name__}, expected a state dict (names -> tensors)")
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ControllerError(
                f"{path}: tensor {key!r} holds non-finite values (NaN or Inf); a controller needs finite weights"
            )
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as e:
        raise ControllerError(f"{path}: weights do not fit --factory {ref}: {str(e).strip().splitlines()[0]}") from e
    model.eval()
    if method is not None:
        if not callable(getattr(model, method, None)):
            raise ControllerError(f"method {method!r}: {type(model).__name__} has no such method or submodule")
        model = ActionMethod(model, method)
    width = next((int(m.in_features) for m in model.modules() if isinstance(m, nn.Linear)), None)
    return _Read(
        model,
        model,
        "torch.export of the factory's module" + (f" through its method {method!r}" if method else ""),
        width,
    )


class ActionMethod(nn.Module):
    """``forward`` = ``model.<method>``: the user's action method or submodule, for tracing."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, x: torch.Tensor) -> Any:
        return getattr(self.model, self.method)(x)


def _first_line(e: BaseException, limit: int = 160) -> str:
    """An exception's first line, cut to ``limit`` characters."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _from_torchscript(path: Path, obs_dim: int | None) -> _Read:
    from torch._export.converter import TS2EPConverter

    try:
        scripted = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:  # noqa: BLE001 - TorchScript raises RuntimeError and friends
        raise ControllerError(f"{path}: not a TorchScript file ({str(e).strip().splitlines()[0]})") from e
    if obs_dim is None:
        raise ControllerError(f"{path}: TorchScript does not record the input size; pass obs_dim")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = TS2EPConverter(scripted, (_samples(obs_dim, 4),)).convert()
    except Exception as e:  # noqa: BLE001 - the converter raises many types for unsupported TorchScript
        raise ControllerError(
            f"{path}: cannot translate the TorchScript graph: {str(e).strip().splitlines()[0]}"
        ) from e
    return _Read(program.module(), scripted, "TS2EPConverter (TorchScript graph translated op by op)", obs_dim, True)


def import_onnx2torch() -> Any:
    """The ``onnx2torch`` module; torchvision stubbed for its two detection ops when it cannot be imported."""
    if "onnx2torch" in sys.modules:
        return sys.modules["onnx2torch"]
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - missing, or a wheel built for another torch

        def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise ControllerError("this ONNX op (NMS, RoiAlign) needs torchvision, which is not installed")

        vision, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")
        ops.nms = ops.roi_align = ops.box_convert = unavailable  # type: ignore[attr-defined]
        vision.ops = ops  # type: ignore[attr-defined]
        saved = {k: sys.modules.get(k) for k in ("torchvision", "torchvision.ops")}
        sys.modules.update({"torchvision": vision, "torchvision.ops": ops})
        try:
            import onnx2torch
        finally:
            for k, v in saved.items():
                if v is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = v
        return onnx2torch
    import onnx2torch

    return onnx2torch


def _onnx_output(path: Path, names: list[str], output: int | str | None) -> str | None:
    """The name of the ONNX output that is the action (None: output None, the model must have one)."""
    if isinstance(output, str):
        if output not in names:
            raise ControllerError(f"{path}: output {output!r}: the model's outputs are {', '.join(map(repr, names))}")
        return output
    if output is None:
        return None
    if not 0 <= output < len(names):
        raise ControllerError(f"{path}: output {output}: the model has {len(names)} outputs ({', '.join(names)})")
    return names[output]


def _only_output(model: Any, name: str) -> Any:
    """A copy of the ONNX model computing output ``name`` alone: what only other outputs need (a value head,
    SB3's log-prob with its Squeeze by a computed axis) is dropped, so it neither converts nor traces."""
    import onnx

    needed, nodes = {name}, []
    for node in reversed(model.graph.node):
        if needed.intersection(node.output):
            nodes.append(node)
            needed.update(i for i in node.input if i)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(reversed(nodes))
    kept = [o for o in model.graph.output if o.name == name]
    del out.graph.output[:]
    out.graph.output.extend(kept)
    initializers = [t for t in model.graph.initializer if t.name in needed]
    del out.graph.initializer[:]
    out.graph.initializer.extend(initializers)
    return out


def _from_onnx(path: Path, output: int | str | None = 0) -> _Read:
    import onnx
    import onnxruntime as ort

    try:
        model = onnx.load(str(path))
    except Exception as e:  # noqa: BLE001 - protobuf decode errors vary
        raise ControllerError(f"{path}: not an ONNX model ({str(e).strip().splitlines()[0]})") from e
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise ControllerError(f"{path}: the model takes {len(inputs)} inputs; a controller takes the observation alone")
    dims = inputs[0].type.tensor_type.shape.dim
    if not dims or not dims[-1].dim_value:
        raise ControllerError(f"{path}: input {inputs[0].name!r} has no fixed feature size")
    obs_dim = int(dims[-1].dim_value)
    names = [o.name for o in model.graph.output]
    kept = _onnx_output(path, names, output) if len(names) > 1 else None
    if kept is not None:
        model = _only_output(model, kept)
    model = _simplified(model)
    try:
        gm = import_onnx2torch().convert(model)
    except ControllerError:
        raise
    except Exception as e:  # noqa: BLE001 - onnx2torch raises NotImplementedError and friends per op
        raise ControllerError(f"{path}: onnx2torch cannot convert it: {str(e).strip().splitlines()[0]}") from e
    _static_slices(gm)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def reference(x: torch.Tensor) -> Any:
        rows = [session.run(None if kept is None else [kept], {name: row[None].numpy()}) for row in x]
        outs = [torch.cat([torch.from_numpy(np.asarray(r[k])) for r in rows]) for k in range(len(rows[0]))]
        return outs[0] if len(outs) == 1 else tuple(outs)

    names = [o.name for o in model.graph.output]
    return _Read(gm, reference, "onnxsim, onnx2torch, then torch.export", obs_dim, output_names=names, kept_output=kept)


def _simplified(model: Any) -> Any:
    """onnxsim's constant and shape folding (a chunk's split points computed from Shape ops become constants)."""
    import onnxsim

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simplified, ok = onnxsim.simplify(model)
    except Exception:  # noqa: BLE001 - onnxsim fails on some valid models: convert the original then
        return model
    return simplified if ok else model


def _constant_value(gm: fx.GraphModule, arg: Any) -> torch.Tensor | None:
    """The tensor an onnx2torch node argument holds when it is a constant (initializer or Constant op)."""
    if not isinstance(arg, fx.Node):
        return None
    if arg.op == "get_attr":
        value: Any = gm
        for part in str(arg.target).split("."):
            value = getattr(value, part)
        return value if isinstance(value, torch.Tensor) else None
    if arg.op == "call_module":
        value = getattr(gm.get_submodule(str(arg.target)), "value", None)
        return value if isinstance(value, torch.Tensor) else None
    return None


def _static_slices(gm: fx.GraphModule) -> None:
    """onnx2torch's Slice reads its constant bounds with ``.numpy()`` (untraceable): make them Python slices."""
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or type(gm.get_submodule(str(node.target))).__name__ != "OnnxSlice":
            continue
        consts = []
        for arg in node.args[1:]:
            value = _constant_value(gm, arg)
            if value is None:
                break
            consts.append([int(v) for v in value.reshape(-1)])
        else:
            starts, ends = consts[0], consts[1]
            axes = consts[2] if len(consts) > 2 else list(range(len(starts)))
            steps = consts[3] if len(consts) > 3 else [1] * len(starts)
            index: Any = node.args[0]
            with gm.graph.inserting_before(node):
                for a, s, e, step in zip(axes, starts, ends, steps):
                    cut = slice(s, None if e >= 2**62 else e, step)
                    key: Any = (*[slice(None)] * a, cut) if a >= 0 else (Ellipsis, cut, *[slice(None)] * (-a - 1))
                    index = gm.graph.call_function(operator.getitem, (index, key))
            node.replace_all_uses_with(index)
            gm.graph.erase_node(node)
            changed = True
    if changed:
        gm.graph.eliminate_dead_code()
        gm.recompile()


# ---------------------------------------------------------------- tracing and checking


def _export(path: Path, module: nn.Module, obs_dim: int) -> fx.GraphModule:
    """``torch.export`` (non-strict) with a dynamic batch axis; a static batch if that fails."""
    example = (_samples(obs_dim, 4),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.export(
                module, example, dynamic_shapes=({0: torch.export.Dim.DYNAMIC},), strict=False
            )
        except Exception:  # noqa: BLE001 - retried with a static batch, which reports its own error
            try:
                program = torch.export.export(module, example, strict=False)
            except Exception as e:  # noqa: BLE001
                raise ControllerError(
                    f"{path}: torch.export cannot trace the model: {str(e).strip().splitlines()[0]}"
                ) from e
    return program.module()


def _samples(obs_dim: int, n: int = CHECK_SAMPLES) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return 3.0 * torch.randn(n, obs_dim, generator=generator)


def _pick(out: Any, output: int | str | None, index: int | None) -> torch.Tensor:
    """The action among a model's outputs: by key from a dict, by position from a tuple."""
    while isinstance(out, (tuple, list, dict)):
        if isinstance(out, dict):
            out = out[output] if isinstance(output, str) else list(out.values())[index or 0]
        else:
            out = out[0] if len(out) == 1 or index is None else out[index]
    return out


def call_rows(fn: Any, obs: torch.Tensor, output: int | str | None = 0, index: int | None = 0) -> torch.Tensor:
    """``fn(obs)``'s action as one tensor; row by row if fn refuses the batch (a program saved at batch 1)."""
    with torch.no_grad():
        try:
            return _pick(fn(obs), output, index).float()
        except Exception:  # noqa: BLE001 - a fixed-batch program: feed it row by row
            return torch.cat([_pick(fn(row[None]), output, index).float() for row in obs])


def _check_deterministic(path: Path, reference: Any, obs: torch.Tensor) -> None:
    """Refuse a model whose outputs change between two calls on the same observations (before tracing it)."""

    def leaves(out: Any) -> list[torch.Tensor]:
        return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]

    try:
        with torch.no_grad():
            first, second = leaves(_rows(reference, obs)), leaves(_rows(reference, obs))
    except Exception:  # noqa: BLE001 - a model that cannot run is reported by the tracing or the parity check
        return
    if len(first) != len(second) or any(a.shape != b.shape or not torch.equal(a, b) for a, b in zip(first, second)):
        raise ControllerError(
            f"{path}: the model's output changes between two calls on the same observations: "
            "a stochastic policy (sampling, noise or dropout); give its deterministic action "
            "(method=, output=), e.g. the mean of the action distribution"
        )


def _rows(fn: Any, obs: torch.Tensor) -> Any:
    """``fn(obs)``, or its rows' outputs concatenated when fn refuses the batch."""
    try:
        return fn(obs)
    except Exception:  # noqa: BLE001 - a fixed-batch program: feed it row by row
        outs = [fn(row[None]) for row in obs]
        return pytree.tree_map(lambda *ts: torch.cat(ts), outs[0], *outs[1:])


def _check_parity(
    path: Path, gm: fx.GraphModule, reference: Any, obs: torch.Tensor, output: int | str | None, index: int | None
) -> None:
    expected = call_rows(reference, obs, output, index)
    again = call_rows(reference, obs, output, index)
    if expected.shape != again.shape or not torch.equal(expected, again):
        raise ControllerError(
            f"{path}: the model's output changes between two calls on the same observations: "
            "a stochastic policy (sampling, noise or dropout); give its deterministic action "
            "(method=, output=), e.g. the mean of the action distribution"
        )
    with torch.no_grad():
        got = gm(obs)
    err = float((got - expected.reshape(got.shape)).abs().max()) if got.numel() == expected.numel() else float("inf")
    if not err <= MATCH_TOL * max(1.0, float(expected.abs().max())):
        raise ControllerError(
            f"{path}: the traced graph gives actions up to {err:.3g} away from the original "
            "on sampled observations; the conversion is refused"
        )
