"""A schedule for the fused dense kernels on a microcontroller: accumulators in registers, no workspace.

The Linux schedule (``export/schedule.py``) puts the reduction loop outermost so that SIMD lanes walk
a weight row; with no SIMD (Cortex-M4/M7 FPU, one float per instruction) that keeps the N
accumulators in memory, a load and a store around every multiply-add, and the N-float accumulator
buffer goes to TVM's workspace allocator. Here each group of ``unroll`` outputs is finished before
the next: its accumulators live in a ``local`` buffer (registers), the reduction loop runs inside,
and the elementwise epilogue (bias, activation) is computed straight from the registers. The N-float
buffer disappears, and with it the workspace.

The weights are laid out for that access order (:mod:`export.weight_layout`): a group of ``u`` outputs
reads ``u`` weights of row k, then ``u`` of row k+1, ..., so the [K, N] matrix is stored as [N/u, K, u]
and a group streams its weights from one pointer (short immediate offsets, no address arithmetic per
load; a row of N floats is wider than a load's offset range on Thumb-2). The driver
(:mod:`export.mcu.codegen`) and the host check see the packed arrays.
"""

from __future__ import annotations

import tvm
from tvm import s_tir

from export.schedule import ScheduleReport, matvec_nest, reduction_blocks
from export.weight_layout import constant_args, pack_constants, pack_read

UNROLL = 8  # accumulators per group: 8 of the 32 single-precision registers, 8 more for a row piece of weights


def _group(extent: int, unroll: int) -> int:
    """The largest group size <= unroll that divides the output width."""
    return next(u for u in range(unroll, 0, -1) if extent % u == 0)


def _groups_and_a_tail(sch: s_tir.Schedule, red, n_loop, k_loop, extent: int, unroll: int) -> None:
    """A width with no divisor near ``unroll`` (a prime such as 163): groups of ``unroll`` and one short tail group.

    The group loop is partitioned; each part keeps its accumulators in registers. The epilogue stays a
    loop of its own over an N-float buffer (the kernel's scratch, in the arena), read once.
    """
    n_outer, n_inner = sch.split(n_loop, [None, unroll])
    sch.reorder(n_outer, k_loop, n_inner)
    sch.loop_partition(n_outer, [extent // unroll, None])
    for block in reduction_blocks(sch, sch.get_sblock("root")):
        group, k, lanes = sch.get_loops(block)[-3:]
        acc = sch.cache_write(block, 0, "local")
        sch.reverse_compute_at(acc, group)
        sch.unroll(lanes)
        sch.unroll(sch.get_loops(acc)[-1])
        sch.decompose_reduction(block, k)


def schedule_dense_scalar(func: tvm.tirx.PrimFunc, unroll: int = UNROLL) -> tvm.tirx.PrimFunc:
    """Schedule one fused batch-1 dense kernel (matvec + elementwise tail); raises ValueError if it does not fit."""
    return _schedule(func, unroll, frozenset())[0]


def _schedule(
    func: tvm.tirx.PrimFunc, unroll: int, constant: frozenset[int]
) -> tuple[tvm.tirx.PrimFunc, tuple[int, int] | None]:
    """The scheduled kernel and, when its weights were packed, (weight parameter index, group size).

    Only a weight that every call passes as a folded constant (positions ``constant``) can be packed.
    """
    sch = s_tir.Schedule(func)
    red, loops, extents, names = matvec_nest(sch, leading=True)
    for name in names[1:-1]:  # the elementwise chain, folded into the output block
        sch.compute_inline(sch.get_sblock(name))
    _, n_loop, k_loop = loops
    u = _group(extents[1], unroll)
    if u < unroll // 2 and extents[1] > unroll:
        _groups_and_a_tail(sch, red, n_loop, k_loop, extents[1], unroll)
        return sch.mod["main"], None
    weight = pack_read(sch, red, func, extents[2], extents[1], u, constant)  # [N/u, K, u] (module doc)
    out = sch.get_sblock(names[-1])
    acc = sch.cache_write(red, 0, "local")
    sch.reverse_compute_inline(out)  # the epilogue reads the accumulators, not an N-float buffer
    n_outer, n_inner = sch.split(n_loop, [None, u])
    sch.reorder(n_outer, k_loop, n_inner)
    sch.unroll(n_inner)
    sch.reverse_compute_at(acc, n_outer)
    sch.unroll(sch.get_loops(acc)[-1])
    sch.decompose_reduction(red, k_loop)
    return sch.mod["main"], (weight, u) if weight is not None else None


def schedule_module_scalar(mod: tvm.IRModule, unroll: int = UNROLL) -> tuple[tvm.IRModule, ScheduleReport]:
    """Apply :func:`schedule_dense_scalar` to every PrimFunc it fits (the others keep TVM's default lowering); all exported."""
    report = ScheduleReport(lanes=1, unroll=unroll)
    funcs = dict(mod.functions)
    packed: dict[str, tuple[int, int]] = {}
    constant = constant_args(mod)
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        try:
            scheduled, weight = _schedule(func, unroll, constant.get(gv.name_hint, frozenset()))
        except (ValueError, s_tir.ScheduleError) as e:
            report.default.append(f"{gv.name_hint}: {str(e).splitlines()[0]}")
            scheduled = func
        else:
            report.scheduled.append(gv.name_hint)
            if weight is not None:
                packed[gv.name_hint] = weight
        # Every kernel is called by name from the generated C: an unscheduled one (the normaliser's sub/div, a
        # clip, LayerNorm) is still private after fusion, and without a global symbol TVM's MakePackedAPI skips it
        # and a later pass fails ("This pass must be called after MakePackedAPI").
        funcs[gv] = scheduled.with_attr("global_symbol", gv.name_hint)
    out = tvm.IRModule(funcs, attrs=mod.attrs, global_infos=mod.global_infos)
    return pack_constants(out, packed), report
