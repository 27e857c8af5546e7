"""Hand-written, dlight-style schedule rules for the fused batch-1 dense kernels of an MLP.

After ``relax.get_pipeline("zero")`` each layer is one fused kernel: a matrix-vector product
``y[n] += x[k] * W[k, n]`` (weights already folded to [K, N]) followed by elementwise ops (bias,
activation). TVM's default CPU lowering runs that product with the output loop outermost and the
reduction innermost, one scalar at a time. Two rules replace it, chosen by the SIMD width:

- 128-bit SIMD (SSE2, NEON: 4 lanes): **register tiles**. The outputs are cut into tiles of up to
  ``REGISTER_UNROLL`` vectors; per tile the accumulators stay in registers while the reduction walks K
  (one contiguous piece of a weight row per step), and the elementwise epilogue (bias, activation) is
  computed from the registers as the tile is stored: no accumulator row loaded and stored every step,
  no N-float product buffer. A width the tile does not divide ends in one guarded partial tile.
  A single output (the action layer of a one-action controller) vectorises the reduction instead:
  partial sums in registers, added up at the end, rather than one chain of K dependent additions.
- wider SIMD (AVX2, AVX-512): **row sweeps**. The reduction loop is outermost so the inner loop walks a
  contiguous weight row, the output loop split into SIMD-register-wide pieces, vectorised (and a few
  unrolled); a width that the tile does not divide (pruning leaves 75 or 212) is partitioned: the
  largest multiple of the tile runs vectorised and the remainder in a short scalar loop. Measured on
  a Zen 5 (AVX-512) the row sweep was faster there (fewer, wider vectors per row), and as fast on AVX2;
  register tiles of 8 x 16 lanes, measured again in the stub's kernel plan (no VM), were still slower:
  2.11 against 1.80 µs unpruned, 0.76 against 0.65 µs at 25% (its widths leave a partial tile run
  output by output). A single output (the action layer) takes the vector partial sums of the
  128-bit rule at every width: the row sweep made it one chain of K dependent multiply-adds
  (unpruned 1.76 -> 1.56 µs a call in the stub), and a K that no chunk divides (pruning leaves 163)
  keeps its partial sums with the last chunk guarded (25% model 0.66 -> 0.55 µs). Its 4 x 16 partial
  sums were then added one by one, 64 dependent scalar additions; they are folded into one vector first
  (3 vector adds, then 16 lanes): stub 1.52 -> 1.50 µs unpruned, 0.51 -> 0.49 at 25%, 0.29 both at 10%
  (medians of 7 interleaved rounds, load 1.5 on 2 cores). A halving tree down to one lane was no faster.

  Measured on the same Zen 5 for the unpruned 256 x 256 layer (stub bench, interleaved, load ~1, each
  within 0.01 µs of the current row sweep at 1.55 µs, so not taken): unroll 1 or 4 instead of 2; 8-lane
  (256-bit) vectors instead of 16; the whole 256-output row as one register tile of 16 x 16 lanes with
  the epilogue computed from the registers (LLVM already keeps the 16 row accumulators in zmm registers
  across the reduction in the row sweep: the loop is pure broadcast + 16 FMAs from memory); two register
  tiles of 8 x 16 lanes were slower (2.10). The layer is bound by reading its 256 KB from L2: the same
  loop in C runs at 1.36 µs (p50) and neither software prefetch (1 to 16 rows ahead) nor two interleaved
  halves of the reduction changed that (four: slower, 2.0); weights on a 2 MB huge page neither, nor (in
  the stub) prefetching the first 0.5 or 2 KB of the next kernel's weights before each call (+0.01 to
  +0.03 µs). The plan's tensors are already 64-byte aligned and bias and activation already fused. perf:
  86% of a call in that kernel, 5% the 3 x 256 layer, 3% the action layer (before the fold above).

The elementwise chain is inlined into one (vectorised) loop either way. Kernels that do not match
the pattern keep TVM's default lowering (still correct, just slower), and the report says which ones
were scheduled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
from tvm import s_tir

from export.batched_schedule import schedule_batched

REDUCE = 2  # IterVar.iter_type of a reduction axis (CommReduce)
REGISTER_TILE_LANES = 4  # SIMD widths up to this get register tiles; wider ones the row sweep
REGISTER_UNROLL = 8  # vectors per register tile at most (16 SIMD registers: 8 accumulators + operands)


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


LATENCY = 4  # cycles until a multiply-add's result can be added to again: one accumulator per tile step at most
ISSUE = 2  # vector multiply-adds started per cycle (two FMA/FP units on current x86-64 and Cortex-A cores)


def _tile(extent: int, lanes: int, unroll: int) -> tuple[int, int]:
    """The register tile (u vectors of v lanes) for an output width, by a rough cycles-per-reduction-step model.

    Vectors are full SIMD width (scalars only for a width below it). Each full tile costs
    max(LATENCY, u / ISSUE) cycles per reduction step (u independent accumulator chains, issued ISSUE
    per cycle); the outputs left over form one guarded partial tile, run output by output
    (max(LATENCY, rest)). Ties go to the tile without a remainder, then the wider tile.
    """
    v = lanes if extent >= lanes else 1
    best: tuple[float, bool, int, int] | None = None
    for u in range(1, unroll + 1):
        tile = u * v
        full, rest = divmod(extent, tile)
        cost = full * max(LATENCY, u / ISSUE) + (max(LATENCY, rest) if rest else 0)
        key = (cost, rest > 0, -tile, u)
        if best is None or key < best:
            best = key
    assert best is not None
    return best[3], v


def _vectorise(sch: s_tir.Schedule, loop, u: int, v: int) -> None:
    """Split ``loop`` into (rest, u unrolled, v vector lanes)."""
    _, inner = sch.split(loop, [None, u * v])
    if u > 1:
        unrolled, vec = sch.split(inner, [u, v])
        sch.unroll(unrolled)
        sch.vectorize(vec)
    else:
        sch.vectorize(inner)


def reduction_blocks(sch: s_tir.Schedule, block) -> list:
    """The reduction blocks at or under ``block``."""
    if _is_reduction(sch, block):
        return [block]
    return [b for child in sch.get_child_blocks(block) for b in reduction_blocks(sch, child)]


def _row_sweep(sch: s_tir.Schedule, red, loops, extents, lanes: int, unroll: int) -> None:
    """Reduction outermost, the output row split into vectors (wide SIMD; see the module doc)."""
    _, n_loop, k_loop = loops
    n = extents[1]
    u, v = _split_factor(n, lanes, unroll)
    tile = unroll * lanes
    if u * v < tile and n > tile:
        # A pruned width rarely divides the SIMD tile: compute the largest multiple of it vectorised
        # and the few leftover outputs in a scalar loop, rather than the whole row scalar.
        sch.loop_partition(n_loop, [n // tile * tile, None])
        for rb in reduction_blocks(sch, sch.get_sblock("root")):
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


def _accumulate_in_registers(sch: s_tir.Schedule, block, u: int, v: int, epilogue=None) -> None:
    """Under ``block``'s tile loop (tile, k, outputs): accumulators in a tile-sized ``local`` buffer, stored once.

    ``epilogue``: the elementwise output block, computed from the accumulators as they are stored (the
    N-float product buffer disappears).
    """
    n_outer, k_loop, _ = sch.get_loops(block)[-3:]
    store = sch.cache_write(block, 0, "local")
    if epilogue is not None:
        sch.reverse_compute_inline(epilogue)
    sch.reverse_compute_at(store, n_outer)
    for b in (block, store):  # the update first: decompose_reduction copies its loop kinds to the init
        last = sch.get_loops(b)[-1]
        if v > 1:
            _vectorise(sch, last, u, v)
        elif u > 1:
            sch.unroll(last)
    sch.decompose_reduction(block, k_loop)


def _split_reduction(sch: s_tir.Schedule, red, k_extent: int, lanes: int) -> None:
    """One output (a single action): the reduction itself is vectorised into independent partial sums.

    A single accumulator would be one chain of K dependent additions; instead K is cut into chunks of
    ``chains`` x ``lanes`` partial sums (registers, contiguous weight loads) added up at the end. The
    summation order changes (by ulps; every library is checked against onnxruntime anyway).
    """
    # a K no chunk divides (pruning leaves 163 or 54) keeps the chunk: its last one is guarded, not a scalar chain
    chains = next((c for c in (4, 2, 1) if k_extent % (c * lanes) == 0), None) or next(
        c for c in (4, 2, 1) if c * lanes <= k_extent or c == 1
    )
    k_loop = sch.get_loops(red)[-1]
    _, k_inner = sch.split(k_loop, [None, chains * lanes])
    partial = sch.rfactor(k_inner, 0)
    sch.set_scope(partial, 0, "local")
    k_outer, k_inner = sch.get_loops(partial)[-2:]
    _vectorise(sch, k_inner, chains, lanes)
    sch.decompose_reduction(partial, k_outer)
    if chains > 1 and lanes > REGISTER_TILE_LANES:
        # chains x lanes partial sums added one by one are 64 dependent scalar additions at 16 lanes: fold the
        # chains into one vector first (chains - 1 vector adds), then add up its lanes (module doc; at 4
        # lanes the chain is 16 additions and the 128-bit code, the SSE2 baseline among it, stays as it was)
        k_left = sch.get_loops(red)[-1]
        _, lane = sch.split(k_left, [None, lanes])
        folded = sch.rfactor(lane, 0)
        sch.set_scope(folded, 0, "local")
        chain, lane = sch.get_loops(folded)[-2:]
        sch.vectorize(lane)
        sch.decompose_reduction(folded, chain)


def _register_tiles(sch: s_tir.Schedule, red, extents, epilogue, lanes: int) -> None:
    """Keep each tile of outputs in registers while the reduction runs inside it (128-bit SIMD; module doc).

    The output loop is split into tiles of u x v (u vectors of v lanes, :func:`_tile`); per tile the
    accumulators live in a ``local`` buffer (registers once unrolled and vectorised), the reduction
    walks K with one contiguous u*v-float piece of a weight row per step, and the tile is stored once,
    through the elementwise epilogue. A width the tile does not divide ends in one partial tile: the
    tile loop is partitioned, the full tiles run unguarded and vectorised, the partial one guarded
    output by output, and the epilogue stays a loop of its own.
    """
    extent = extents[1]
    if extent == 1 and extents[2] > lanes:
        _split_reduction(sch, red, extents[2], lanes)
        return
    u, v = _tile(extent, lanes, REGISTER_UNROLL)
    tile = u * v
    n_loop, k_loop = sch.get_loops(red)[-2:]
    n_outer, n_inner = sch.split(n_loop, [None, tile])
    sch.reorder(k_loop, n_inner)  # (tile, k, outputs in the tile)
    if extent % tile == 0 or extent < tile:
        _accumulate_in_registers(sch, red, u, v, epilogue)
        return
    sch.loop_partition(n_outer, [extent // tile, None])
    full, partial = reduction_blocks(sch, sch.get_sblock("root"))
    _accumulate_in_registers(sch, full, u, v)
    _accumulate_in_registers(sch, partial, tile, 1)
    tail = list(sch.get_child_blocks(sch.get_sblock("root")))[-1]
    last = sch.get_loops(tail)[-1]
    if int(sch.get(last).extent) % lanes == 0:
        _, vec = sch.split(last, [None, lanes])
        sch.vectorize(vec)


def schedule_dense(func: tvm.tirx.PrimFunc, lanes: int, unroll: int) -> tvm.tirx.PrimFunc:
    """Schedule one fused kernel (matvec + elementwise epilogue); raises ScheduleError if it does not fit.

    ``lanes`` <= REGISTER_TILE_LANES: register tiles; wider: the row sweep, split ``unroll`` x ``lanes``.
    """
    sch = s_tir.Schedule(func)
    red, loops, extents, names = matvec_nest(sch)
    # The elementwise tail: inline every block between the product and the output into the output block.
    red_name = sch.get(red).name_hint
    for name in names[:-1]:
        if name != red_name:
            sch.compute_inline(sch.get_sblock(name))
    # a single output at any width: vector partial sums (a row sweep would be one chain of K dependent FMAs)
    single = extents[1] == 1 and extents[2] > lanes
    if lanes <= REGISTER_TILE_LANES or single:
        _register_tiles(sch, red, extents, sch.get_sblock(names[-1]) if names[-1] != red_name else None, lanes)
    else:
        _row_sweep(sch, red, loops, extents, lanes, unroll)
    return sch.mod["main"]


def schedule_rule(lanes: int, unroll: int) -> dict:
    """What :func:`schedule_dense` does for this SIMD width, as the manifest records it."""
    if lanes <= REGISTER_TILE_LANES:
        return {
            "rule": f"matvec: register tiles (up to {REGISTER_UNROLL} x lanes outputs accumulated in registers, "
            "reduction inside, weights read row piece by row piece); elementwise epilogue computed from "
            "the registers",
            "lanes": lanes,
            "unroll": REGISTER_UNROLL,
        }
    return {
        "rule": f"matvec: reduction outermost, output split (unroll {unroll} x lanes), vectorised; "
        "a single output summed in vector partial sums; elementwise inlined and vectorised",
        "lanes": lanes,
        "unroll": unroll,
    }


def schedule_module(mod: tvm.IRModule, lanes: int, unroll: int = 2) -> tuple[tvm.IRModule, ScheduleReport]:
    """Apply :func:`schedule_dense` to every PrimFunc it fits; the others keep the default lowering."""
    report = ScheduleReport(lanes, REGISTER_UNROLL if lanes <= REGISTER_TILE_LANES else unroll)
    funcs = dict(mod.functions)
    for gv, func in list(mod.functions.items()):
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        try:
            scheduled = schedule_dense(func, lanes, unroll)
        except (ValueError, s_tir.ScheduleError) as e:
            try:  # batched products (a planner's M rows): export/batched_schedule.py
                scheduled = schedule_batched(func, lanes)
            except (ValueError, s_tir.ScheduleError):
                report.default.append(f"{gv.name_hint}: {str(e).splitlines()[0]}")
                continue
        funcs[gv] = scheduled.with_attr("global_symbol", gv.name_hint)
        report.scheduled.append(gv.name_hint)
    return tvm.IRModule(funcs, attrs=mod.attrs, global_infos=mod.global_infos), report
