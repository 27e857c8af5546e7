"""Pruning groups, traced from the model: every parameter slice that must go when one hidden unit goes.

The one idea the rest of prune/ asks. A *dimension* is a hidden feature space produced by a Linear
(its ``out_features``). The model is read as a ``torch.fx`` graph: a plain ``nn.Module`` is traced
with ``torch.fx.symbolic_trace``; a ``GraphModule`` (from ``symbolic_trace``, from
``torch.export.export(...).module()`` with its ATen ops, or from onnx2torch with its own modules)
is read as it is. The walk follows each dimension through element-wise ops (activations, Dropout,
clamp, scalar arithmetic), LayerNorm, branching (several consumers of one tensor), reshapes that
keep the shape, and ``cat`` along the feature axis into later Linears (see :mod:`prune.ops` for
every spelling; the walk itself is :mod:`prune.tracer`). A Linear is an ``nn.Linear`` or an op on constant tensors (``F.linear``,
``aten.linear``, ``aten.addmm``, ``x @ W``). Every unit of a group is a set of slices: a row of the
producer's weight and bias, the matching column of every consumer's weight, the LayerNorm weight and
bias entries, the entries of per-feature constants it is combined with.

Residual sums couple: when two equally wide dimensions meet in a sum (``x + f(x)``) they become one
group (union-find over dimensions), so the producers of both operands and the consumers of the sum
keep the same units; :attr:`Group.producers` lists every coupled producer and
:attr:`Group.couplings` the nodes that coupled them. A per-feature constant (a buffer, parameter or
graph constant: ``h * scale + shift``, clamp bounds, normaliser statistics) is coupled the same way
and sliced with the group.

Anything the tracer does not model (reshapes that change the shape, indexing, reductions over
features, unknown ops or modules) *blocks* the dimensions it touches: they are left out of the
groups and listed in :attr:`Groups.excluded` with the node that blocked them (``strict=True``
raises instead, naming the node, its op and the supported set). Shared modules and tied weights are
refused with a :class:`PruneError` (in a graph, a tensor read by two layers leaves their dimensions
whole: exporters merge equal initializers). The network input and every output are protected unless
the caller opts in.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from prune.errors import PruneError
from prune.ops import SUPPORTED
from prune.params import tensor_at
from prune.tracer import FIXED, Dim, Layout, ModuleInfo, Slice, Tracer

__all__ = ["FIXED", "Group", "Groups", "Layout", "ModuleInfo", "Slice", "find_groups"]


@dataclass
class Group:
    """A prunable hidden dimension: ``size`` units, each removable with all of its ``slices``.

    ``producers`` are the Linears whose outputs are these units (several when a residual sum
    couples them); ``couplings`` names the nodes (sums, products) that coupled them.
    """

    name: str
    component: str
    size: int
    producers: list[str]
    slices: list[Slice]
    couplings: list[str] = field(default_factory=list)


@dataclass
class Groups:
    """The result of :func:`find_groups`: groups, their components, and what was left out and why."""

    groups: list[Group]
    components: dict[str, list[str]]
    excluded: dict[str, str]
    protected: dict[str, str]
    modules: dict[str, ModuleInfo]
    total_params: int
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise PruneError(f"no group named {name!r}; groups: {', '.join(g.name for g in self.groups)}")

    @property
    def names(self) -> list[str]:
        """Group names in graph order."""
        return [g.name for g in self.groups]

    def to_dict(self) -> dict:
        """JSON-serialisable summary."""
        return asdict(self)


def _check_shared(model: nn.Module, gm: fx.GraphModule) -> None:
    seen: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            raise PruneError(
                f"parameters '{seen[id(p)]}' and '{name}' are the same tensor (tied or shared weights); "
                "prune/ refuses to shrink one without the other: untie them or exclude the modules"
            )
        seen[id(p)] = name
    calls: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), (nn.Linear, nn.LayerNorm)):
            calls[node.target] = calls.get(node.target, 0) + 1
    for name, n in calls.items():
        if n > 1:
            raise PruneError(
                f"module '{name}' is called {n} times in forward (shared weights); prune/ refuses to shrink it"
            )


def _component_of(producers: list[str], patterns: Mapping[str, Sequence[str]]) -> str | None:
    hits = set()
    for comp, pats in patterns.items():
        for p in pats:
            if any(fnmatch.fnmatchcase(m, p) or fnmatch.fnmatchcase(m, p + ".*") for m in producers):
                hits.add(comp)
    if len(hits) > 1:
        raise PruneError(f"group of {', '.join(producers)} matches several components: {', '.join(sorted(hits))}")
    return hits.pop() if hits else None


def find_groups(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    components: Mapping[str, str | Sequence[str]] | None = None,
    protect_input: bool = True,
    protect_outputs: bool = True,
    strict: bool = False,
) -> Groups:
    """Trace ``model`` and return its pruning groups, each tagged with its component.

    ``components`` maps a component name to module-name patterns (fnmatch; ``"enc"`` also matches
    ``"enc.0"``); groups no pattern claims belong to their producer's top-level submodule (for an
    ``nn.Sequential``, the Linear itself). ``strict`` raises on anything left out instead of listing it.
    """
    if not isinstance(model, nn.Module):
        raise PruneError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    if not all(isinstance(x, torch.Tensor) for x in inputs):
        raise PruneError("example_input must be a tensor or a tuple of tensors shaped like the model's inputs")
    graph_input = isinstance(model, fx.GraphModule)
    try:
        gm = model if isinstance(model, fx.GraphModule) else fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types: name the model and the cause
        raise PruneError(f"cannot trace {type(model).__name__} with torch.fx: {str(e).splitlines()[0]}") from e
    _check_shared(model, gm)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*inputs)
    except Exception as e:
        raise PruneError(f"running {type(model).__name__} on the example input failed: {str(e).splitlines()[0]}") from e

    tracer = Tracer(model, gm, graph_input)
    tracer.run(protect_input, protect_outputs)

    patterns = {k: [v] if isinstance(v, str) else list(v) for k, v in (components or {}).items()}
    module_names = [n for n, _ in model.named_modules() if n]
    for comp, pats in patterns.items():
        for p in pats:
            if not any(fnmatch.fnmatchcase(m, p) or fnmatch.fnmatchcase(m, p + ".*") for m in module_names):
                raise PruneError(
                    f"component {comp!r}: pattern {p!r} matches no module of {type(model).__name__} "
                    f"(modules: {', '.join(module_names[:12])}{' ...' if len(module_names) > 12 else ''})"
                )

    merged: dict[int, list[Dim]] = {}
    for d in sorted(
        tracer.dims, key=lambda d: (d.const, d.id)
    ):  # a group is ordered and named by its features, not its constants
        merged.setdefault(tracer.root(d.id), []).append(d)
    groups, excluded, protected = [], {}, {}
    modules = dict(tracer.modules)
    for members in merged.values():
        if all(d.const for d in members):
            continue  # a constant that meets no feature dimension stays as it is
        name = "+".join(d.name for d in members if not d.const)
        protect = [r for d in members for r in d.protected]
        blocked = [r for d in members for r in d.blocked]
        producers = [p for d in members for p in d.producers]
        slices = [s for d in members for s in d.slices]
        if protect:
            protected[name] = protect[0]
        elif blocked:
            excluded[name] = blocked[0]
        elif not slices:
            continue
        else:
            anchor = producers[0] if producers else name
            top = anchor.split(".")[0]
            # onnx2torch keeps every initializer under one 'initializers' module: a layer there is its own component
            comp = _component_of(producers or [anchor], patterns) or (anchor if top == "initializers" else top)
            groups.append(
                Group(name, comp, members[0].size, producers, slices, [c for d in members for c in d.couplings])
            )
            for s in slices:
                if s.kind == "const":
                    modules[s.module] = tracer.const_info[s.module]
    if strict and excluded:
        raise PruneError(
            "cannot prune " + "; ".join(f"'{k}': {v}" for k, v in excluded.items()) + f" (supported: {SUPPORTED})"
        )
    comps: dict[str, list[str]] = {}
    for g in groups:
        comps.setdefault(g.component, []).append(g.name)
    warnings = [f"dimension '{k}' left unpruned: {v}" for k, v in excluded.items()]
    total = sum(p.numel() for p in model.parameters())
    # weights a graph holds as buffers or constants (onnx2torch's initializers) count as the parameters they are
    held = {
        path
        for info in tracer.modules.values()
        if info.kind in ("linear", "layernorm")
        for path in (info.weight, info.bias_path)
        if path
    }
    total += sum(tensor_at(gm, path).numel() for path in held if path not in tracer.params)
    return Groups(groups, comps, excluded, protected, modules, total, warnings)
