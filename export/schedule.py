"""A hand-written, dlight-style schedule rule for the fused batch-1 dense kernels of an MLP.

After ``relax.get_pipeline("zero")`` each layer is one fused kernel: a matrix-vector product
``y[n] += x[k] * W[k, n]`` (weights already folded to [K, N]) followed by elementwise ops (bias,
activation). TVM's default CPU lowering runs that product with the output loop outermost and the
reduction innermost, one scalar at a time. The rule below makes the reduction loop outermost so the
inner loop walks a contiguous weight row, splits the output loop into SIMD-register-wide pieces,
vectorises them (and unrolls a few), then inlines the elementwise chain into one vectorised loop.
A width that the tile does not divide (pruning leaves 75 or 212) is partitioned: the largest
multiple of the tile runs vectorised and the remainder in a short scalar loop.
Kernels that do not match the pattern keep TVM's default lowering (still correct, just slower),
and the report says which ones were scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import s_tir

REDUCE = 2  # IterVar.iter_type of a reduction axis (CommReduce)


@dataclass
class ScheduleReport:
    """Which kernels the rule scheduled, with which split factors."""

    lanes: int
    unroll: int
    scheduled: list[str] = field(default_factory=list)
    default: list[str] = field(default_factory=list)  # kernels left to TVM's default lowering, and why

    def to_dict(self) -> dict:
        """The report as JSON-ready data."""
        return {"lanes": self.lanes, "unroll": self.unroll, "scheduled": self.scheduled, "default": self.default}


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(int(iv.iter_type) == REDUCE for iv in sch.get(block).iter_vars)


def matvec_nest(sch: s_tir.Schedule, leading: bool = False):
    """A fused batch-1 dense kernel's reduction block, its loops (1, N, K) and extents, and every block's name.

    Raises ValueError unless there is exactly one reduction block (the first block, if ``leading``)
    over a (1, N, K) loop nest: the schedules only know that shape.
    """
    blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
    reductions = [b for b in blocks if _is_reduction(sch, b)]
    if len(reductions) != 1 or (leading and not _is_reduction(sch, blocks[0])):
        raise ValueError(f"expected one {'leading ' if leading else ''}reduction block, found {len(reductions)}")
    red = reductions[0]
    loops = sch.get_loops(red)
    extents = [int(sch.get(lp).extent) for lp in loops]
    if len(loops) != 3 or extents[0] != 1:
        raise ValueError(f"expected a batch-1 matrix-vector loop nest (1, N, K), found {extents}")
    return red, loops, extents, [sch.get(b).name_hint for b in blocks]


def _split_factor(extent: int, lanes: int, unroll: int) -> tuple[int, int]:
    """The largest (unroll, lanes) tile that divides the output width; (1, 1) if none does."""
    for u in range(unroll, 0, -1):
        for v in (lanes, lanes // 2, lanes // 4):
            if v >= 1 and extent % (u * v) == 0 and (u * v > 1 or extent == 1):
                return u, v
    return 1, 1


def _vectorise(sch: s_tir.Schedule, loop, u: int, v: int) -> None:
    """Split ``loop`` into (rest, u unrolled, v vector lanes)."""
    _, inner = sch.split(loop, [None, u * v])
    if u > 1:
        unrolled, vec = sch.split(inner, [u, v])
        sch.unroll(unrolled)
        sch.vectorize(vec)
    else:
        sch.vectorize(inner)


def _reduction_blocks(sch: s_tir.Schedule, block) -> list:
    """The reduction blocks at or under ``block``."""
    if _is_reduction(sch, block):
        return [block]
    return [b for child in sch.get_child_blocks(block) for b in _reduction_blocks(sch, child)]


def schedule_dense(func: tvm.tirx.PrimFunc, lanes: int, unroll: int) -> tvm.tirx.PrimFunc:
    """Schedule one fused kernel (matvec + elementwise epilogue); raises ScheduleError if it does not fit."""
    sch = s_tir.Schedule(func)
    red, loops, extents, names = matvec_nest(sch)
    # The elementwise tail: inline every block between the product and the output into the output block.
    red_name = sch.get(red).name_hint
    for name in names[:-1]:
        if name != red_name:
            sch.compute_inline(sch.get_sblock(name))
    _, n_loop, k_loop = loops
    n = extents[1]
    u, v = _split_factor(n, lanes, unroll)
    tile = unroll * lanes
    if u * v < tile and n > tile:
        # A pruned width rarely divides the SIMD tile: compute the largest multiple of it vectorised
        # and the few leftover outputs in a scalar loop, rather than the whole row scalar.
        sch.loop_partition(n_loop, [n // tile * tile, None])
        for rb in _reduction_blocks(sch, sch.get_sblock("root")):
            n_part, k_part = sch.get_loops(rb)[-2:]
            sch.reorder(k_part, n_part)
            if int(sch.get(n_part).extent) % tile == 0:
                _vectorise(sch, n_part, unroll, lanes)
            sch.decompose_reduction(rb, k_part)
    else:
        sch.reorder(k_loop, n_loop)  # reduction outermost: the inner loop walks one contiguous weight row
        if u * v > 1:
            _vectorise(sch, n_loop, u, v)
        sch.decompose_reduction(red, k_loop)
    tail = list(sch.get_child_blocks(sch.get_sblock("root")))[-1]
    if not _is_reduction(sch, tail):
        last = sch.get_loops(tail)[-1]
        width = int(sch.get(last).extent)
        if width % lanes == 0 and width >= lanes:
            _, vec = sch.split(last, [None, lanes])
            sch.vectorize(vec)
    return sch.mod["main"]


def schedule_module(mod: tvm.IRModule, lanes: int, unroll: int = 2) -> tuple[tvm.IRModule, ScheduleReport]:
    """Apply :func:`schedule_dense` to every PrimFunc it fits; the others keep the default lowering."""
    report = ScheduleReport(lanes, unroll)
    funcs = dict(mod.functions)
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        try:
            scheduled = schedule_dense(func, lanes, unroll)
        except (ValueError, s_tir.ScheduleError) as e:
            report.default.append(f"{gv.name_hint}: {str(e).splitlines()[0]}")
            continue
        funcs[gv] = scheduled.with_attr("global_symbol", gv.name_hint)
        report.scheduled.append(gv.name_hint)
    return tvm.IRModule(funcs, attrs=mod.attrs, global_infos=mod.global_infos), report
