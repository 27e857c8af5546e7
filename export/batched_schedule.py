"""Schedule rule for the small batched matrix products of a planner step (M rows x K -> N, M of a few dozen).

The TD-MPC planner step rolls 33 action sequences through its MLPs at once: after
``relax.get_pipeline("zero")`` each layer is one fused kernel ``y[i, n] += x[i, k] * W[k, n]`` (weights
folded to [K, N]) followed by elementwise ops (bias, ELU), over an (M, N, K) loop nest that the
batch-1 rules of :mod:`export.schedule` do not take. TVM's default lowering runs it one scalar
multiply-add at a time with the accumulator in memory.

The rule: **register blocks of rows x columns**. The output is cut into blocks of ``mr`` rows by
``u`` SIMD vectors of columns; per block the ``mr * u`` vector accumulators stay in registers while
the reduction walks K, each step loading one contiguous ``u``-vector piece of a weight row (reused by
all ``mr`` rows) and broadcasting one input per row (reused by all ``u`` vectors). The elementwise
epilogue is computed from the registers as the block is stored, so no M x N product buffer is
written and read back. Block sizes (:func:`block_shape`): the most accumulators that fit the register
file (16 SIMD registers, 32 with AVX-512's 16 lanes) with the reused operands, so nothing spills,
among the row counts that divide M and the column tiles that divide N.

Fewer outputs per row than SIMD lanes (the reward and Q heads, N = 1): each row's reduction is
vectorised into ``lanes`` partial sums instead. Kernels whose nest is not (M > 1, N, K) with N a
multiple of the SIMD width, or N below it and K a multiple of it, raise ValueError (the caller keeps
TVM's default lowering for them).
"""

from __future__ import annotations

import tvm
from tvm import s_tir

REDUCE = 2  # IterVar.iter_type of a reduction axis (CommReduce)
MAX_ROWS = 6  # rows per register block at most


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(int(iv.iter_type) == REDUCE for iv in sch.get(block).iter_vars)


def registers(lanes: int) -> int:
    """SIMD registers of the target: 32 with AVX-512's 16 lanes, else 16 (SSE, AVX2, NEON)."""
    return 32 if lanes >= 16 else 16


def live_registers(rows: int, u: int) -> int:
    """Registers a block keeps live: its accumulators, the operand reused across the other dimension, one temporary.

    Each weight vector serves all ``rows`` rows and each broadcast input all ``u`` vectors; the smaller
    set is the one held while the other streams.
    """
    return rows * u + min(rows, u) + 1


def block_shape(m: int, n: int, lanes: int) -> tuple[int, int]:
    """(rows, vectors) of the register block for an M x N output: the most accumulators that do not spill.

    Rows divide M and vectors x lanes divide N, with ``live_registers`` at most the register file less
    two; ties go to more vectors (longer contiguous weight pieces), then more rows. Measured on the
    planner's 33 x 64 x 64 product: (1 row, 8 vectors) beat (3, 4), which spills, by 25% with SSE2 and 40% with AVX2.
    """
    limit = registers(lanes) - 2
    best: tuple[int, int, int] | None = None
    for rows in range(1, min(MAX_ROWS, m) + 1):
        if m % rows:
            continue
        for u in range(1, limit + 1):
            if n % (u * lanes) or live_registers(rows, u) > limit:
                continue
            key = (rows * u, u, rows)
            if best is None or key > best:
                best = key
    if best is None:
        raise ValueError(f"output width {n} is not a multiple of the {lanes}-lane SIMD width")
    return best[2], best[1]


def batched_nest(sch: s_tir.Schedule):
    """The kernel's single reduction block, its (M, N, K) extents, and every block's name; ValueError if it is not one."""
    blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
    reductions = [b for b in blocks if _is_reduction(sch, b)]
    if len(reductions) != 1 or not _is_reduction(sch, blocks[0]):
        raise ValueError(f"expected one leading reduction block, found {len(reductions)}")
    red = reductions[0]
    extents = [int(sch.get(lp).extent) for lp in sch.get_loops(red)]
    if len(extents) != 3 or extents[0] <= 1:
        raise ValueError(f"expected a batched matrix product loop nest (M > 1, N, K), found {extents}")
    return red, extents, [sch.get(b).name_hint for b in blocks]


def _row_dots(sch: s_tir.Schedule, red, lanes: int) -> None:
    """Fewer outputs per row than SIMD lanes (a reward or Q head: N = 1): each row's reduction vectorised.

    K is cut into pieces of ``lanes`` partial sums (one vector register per row, contiguous input and
    weight loads), added up once the row is done; the summation order changes by ulps.
    """
    k = sch.get_loops(red)[-1]
    _, k_inner = sch.split(k, [None, lanes])
    partial = sch.rfactor(k_inner, 0)
    sch.set_scope(partial, 0, "local")
    sch.compute_at(partial, sch.get_loops(red)[1])  # per row: the partial sums are one register
    lanes_loop, k_outer = sch.get_loops(partial)[-2:]
    sch.reorder(k_outer, lanes_loop)
    sch.vectorize(lanes_loop)
    sch.decompose_reduction(partial, k_outer)


def schedule_batched(func: tvm.tirx.PrimFunc, lanes: int) -> tvm.tirx.PrimFunc:
    """Schedule one fused batched matmul kernel (product + elementwise epilogue); ValueError if it does not fit.

    N a multiple of the SIMD width: register blocks (module doc); N below it with K a multiple of it:
    row dot products (:func:`_row_dots`).
    """
    sch = s_tir.Schedule(func)
    red, (m, n, k_extent), names = batched_nest(sch)
    if lanes < 2:
        raise ValueError("no SIMD width to block the columns with")
    if n < lanes:
        if k_extent % lanes or k_extent <= lanes:
            raise ValueError(f"{n} outputs per row and a reduction of {k_extent}: no vector to fill")
        for name in names[1:-1]:
            sch.compute_inline(sch.get_sblock(name))
        _row_dots(sch, red, lanes)
        return sch.mod["main"]
    rows, u = block_shape(m, n, lanes)
    red_name = sch.get(red).name_hint
    for name in names[1:-1]:  # the elementwise chain becomes one epilogue block
        sch.compute_inline(sch.get_sblock(name))
    epilogue = sch.get_sblock(names[-1]) if names[-1] != red_name else None
    i, j, k = sch.get_loops(red)
    i_outer, i_inner = sch.split(i, [None, rows])
    j_outer, j_inner = sch.split(j, [None, u * lanes])
    sch.reorder(i_outer, j_outer, k, i_inner, j_inner)
    store = sch.cache_write(red, 0, "local")
    if epilogue is not None:
        sch.reverse_compute_inline(epilogue)
    sch.reverse_compute_at(store, j_outer)
    for b in (red, store):  # the update first: decompose_reduction copies its loop kinds to the init
        r_loop, c_loop = sch.get_loops(b)[-2:]
        c_unrolled, c_vec = sch.split(c_loop, [u, lanes])
        sch.unroll(r_loop)
        sch.unroll(c_unrolled)
        sch.vectorize(c_vec)
    sch.decompose_reduction(red, k)
    return sch.mod["main"]


def batched_rule(lanes: int) -> dict:
    """What :func:`schedule_batched` does for this SIMD width, as a manifest or report records it."""
    return {
        "rule": "batched matmul: register blocks (rows dividing M x vectors of columns accumulated in registers, "
        "reduction inside, one weight-row piece shared by the rows); elementwise epilogue computed from the registers; "
        "fewer outputs per row than lanes: each row's reduction vectorised into lane partial sums",
        "lanes": lanes,
        "registers": registers(lanes),
    }
