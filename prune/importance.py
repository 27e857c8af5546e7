"""Importance of each unit inside a group: a higher score keeps the unit longer.

Metrics live in a registry: ``@register_metric("name")`` on a function
``(model, groups, context) -> {group name: scores}`` adds one. Built in:

- ``l1`` / ``l2``: norm over *all* of a unit's slices (producer row and bias, consumer columns,
  LayerNorm entries), as in group-level magnitude pruning;
- ``random``: seeded uniform scores, the baseline every metric must beat;
- ``activation``: mean |activation| of the unit on given states, as its consumers see it;
- ``contribution``: mean |activation| times the norm of the consumer weights it feeds, i.e. the
  expected size of what the unit adds to the next layer (data-aware and weight-aware).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from prune.capture import linear_inputs
from prune.errors import PruneError
from prune.groups import Group, Groups
from prune.params import linear_bias, linear_weight, norm_affine, tensor_at

Scores = dict[str, torch.Tensor]


@dataclass
class MetricContext:
    """What a metric may use: states the controller visits (for data-aware metrics) and a seed."""

    states: torch.Tensor | tuple[torch.Tensor, ...] | None = None
    seed: int = 0


Metric = Callable[[nn.Module, Groups, MetricContext], Scores]
METRICS: dict[str, Metric] = {}


def register_metric(name: str) -> Callable[[Metric], Metric]:
    """Decorator adding an importance metric under ``name``."""

    def add(fn: Metric) -> Metric:
        METRICS[name] = fn
        return fn

    return add


def score(model: nn.Module, groups: Groups, metric: str = "l1", states=None, seed: int = 0) -> Scores:
    """Per-unit importance of every group under ``metric``."""
    if metric not in METRICS:
        raise PruneError(f"unknown importance metric {metric!r}; known: {', '.join(sorted(METRICS))}")
    scores = METRICS[metric](model, groups, MetricContext(states, seed))
    for g in groups.groups:
        s = scores.get(g.name)
        if s is None or s.shape != (g.size,):
            raise PruneError(f"metric {metric!r} gave no score of shape ({g.size},) for group '{g.name}'")
    return {k: v.detach().double() for k, v in scores.items()}


def _unit_parts(model: nn.Module, groups: Groups, group: Group) -> list[torch.Tensor]:
    """Each slice of the group as a (size, k) matrix: one row per unit (constants only when they are parameters)."""
    n, parts = group.size, []
    for s in group.slices:
        info = groups.modules[s.module]
        if s.kind == "linear.out":
            bias = linear_bias(model, s.module, info)
            parts.append(linear_weight(model, s.module, info)[s.offset : s.offset + n])
            if bias is not None:
                parts.append(bias[s.offset : s.offset + n, None])
        elif s.kind == "linear.in":
            parts.append(linear_weight(model, s.module, info)[:, s.offset : s.offset + n].T)
        elif s.kind == "layernorm":
            for p in norm_affine(model, s.module, info):
                if p is not None:
                    parts.append(p[s.offset : s.offset + n, None])
        elif s.kind == "const" and info.affine_params:
            t = tensor_at(model, s.module)
            parts.append(t.reshape(-1, t.shape[-1])[:, s.offset : s.offset + n].T)
    return parts


@register_metric("l1")
@torch.no_grad()
def l1(model: nn.Module, groups: Groups, ctx: MetricContext) -> Scores:
    """Sum of |w| over every slice of a unit."""
    return {
        g.name: cast(torch.Tensor, sum(p.abs().sum(1) for p in _unit_parts(model, groups, g))) for g in groups.groups
    }


@register_metric("l2")
@torch.no_grad()
def l2(model: nn.Module, groups: Groups, ctx: MetricContext) -> Scores:
    """Euclidean norm over every slice of a unit."""
    return {
        g.name: torch.sqrt(cast(torch.Tensor, sum(p.pow(2).sum(1) for p in _unit_parts(model, groups, g))))
        for g in groups.groups
    }


@register_metric("random")
def random(model: nn.Module, groups: Groups, ctx: MetricContext) -> Scores:
    """Seeded uniform scores (the structured-pruning baseline with no information)."""
    gen = torch.Generator().manual_seed(int(ctx.seed))
    return {g.name: torch.rand(g.size, generator=gen, dtype=torch.float64) for g in groups.groups}


@torch.no_grad()
def _consumer_inputs(model: nn.Module, groups: Groups, states) -> dict[str, torch.Tensor]:
    """Mean |input feature| of every Linear on ``states`` (forward pre-hooks, or the graph run node by node)."""
    if states is None:
        raise PruneError("a data-aware metric needs states: pass states=... (observations the controller visits)")
    means: dict[str, torch.Tensor] = {}

    def seen(name: str, x: torch.Tensor) -> None:
        means[name] = x.detach().abs().reshape(-1, x.shape[-1]).double().mean(0)

    linear_inputs(model, groups, [n for n, info in groups.modules.items() if info.kind == "linear"], states, seen)
    return means


def _activation_scores(model: nn.Module, groups: Groups, ctx: MetricContext, weighted: bool) -> Scores:
    means = _consumer_inputs(model, groups, ctx.states)
    out = {}
    for g in groups.groups:
        total = torch.zeros(g.size, dtype=torch.float64)
        found = False
        for s in g.slices:
            if s.kind != "linear.in":
                continue
            act = means[s.module][s.offset : s.offset + g.size]
            if weighted:
                weight = linear_weight(model, s.module, groups.modules[s.module])
                col = weight[:, s.offset : s.offset + g.size].detach().double()
                act = act * col.norm(dim=0)
            total += act
            found = True
        if not found:
            raise PruneError(f"group '{g.name}' feeds no Linear, so a data-aware metric cannot score it; use l1 or l2")
        out[g.name] = total
    return out


@register_metric("activation")
def activation(model: nn.Module, groups: Groups, ctx: MetricContext) -> Scores:
    """Mean |activation| of each unit over the given states, as its consumer Linears receive it."""
    return _activation_scores(model, groups, ctx, weighted=False)


@register_metric("contribution")
def contribution(model: nn.Module, groups: Groups, ctx: MetricContext) -> Scores:
    """Mean |activation| times the L2 norm of the consumer weight columns it feeds."""
    return _activation_scores(model, groups, ctx, weighted=True)
