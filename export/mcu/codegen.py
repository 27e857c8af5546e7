"""The runtime-free C driver of a compiled controller: kernel chain -> one generated C file.

TVM 0.27 has no microcontroller runtime (microTVM, the C runtime and the AOT executor are gone), so
the Relax ``main`` that ``tvm.compile`` would run in its VM is turned into plain C here: the lowered
module must be a chain of ``call_tir`` kernels on float32 tensors (an MLP is); the C file holds the
folded weights as ``static const float`` arrays (flash; weight-only int8 weights as ``static const
int8_t``, :mod:`export.int8_kernels`), one static buffer per input and
intermediate tensor (RAM), a fixed workspace arena for the kernels' larger scratch buffers, and
calls the kernels (``__tvm_ffi_<name>``, compiled by TVM into an object file) in order.
"""

from __future__ import annotations

import re

import numpy as np
import tvm
from tvm.s_tir import transform as st

from export.errors import ExportError
from export.kernel_chain import CONSTANT, INPUT, INTERMEDIATE, KernelChain

ARENA_ALIGN = 64  # bytes: every workspace block starts on this boundary (what the generated allocator rounds to)


_DTYPE_BYTES = re.compile(r'"(float|int|uint|bfloat)(\d+)"')


def _balanced(text: str, start: int) -> str:
    """The text inside the parenthesis opening at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i]
    raise ValueError("unbalanced parentheses")


def kernel_scratch_bytes(func, name: str) -> int:
    """Upper bound of the scratch memory one kernel allocates: all its buffers, each rounded to ARENA_ALIGN.

    TVM puts small buffers on the stack and the rest in the workspace allocator; counting all of them
    bounds the workspace. A buffer of symbolic size cannot be planned statically and is refused.
    """
    script = func.script()
    total = 0
    for m in re.finditer(r"\b(?:sblock_alloc_buffer|alloc_buffer|allocate)\(", script):
        args = _balanced(script, m.end() - 1)
        dims_text = _balanced(args, args.index("(")) if args.lstrip().startswith("(") else args.split(",")[0]
        dims = []
        for d in dims_text.split(","):
            d = d.strip()
            if not d:
                continue
            num = re.fullmatch(r"(?:T\.int(?:32|64)\()?(\d+)\)?", d)
            if num is None:
                raise ExportError(f"kernel {name}: buffer of symbolic size {dims_text!r}: the arena cannot be sized")
            dims.append(int(num.group(1)))
        dt = _DTYPE_BYTES.search(args)
        elem = int(dt.group(2)) // 8 if dt else 4  # TVMScript omits the default float32
        nbytes = int(np.prod(dims)) * elem if dims else elem
        total += -(-nbytes // ARENA_ALIGN) * ARENA_ALIGN
    return total


def arena_bytes(mod) -> dict[str, int]:
    """Scratch bytes per kernel of a lowered module (the arena is their maximum: kernels run one at a time).

    The buffers are first shrunk to the region each kernel really touches, as TVM's own build does
    (a schedule declares a whole-row accumulator but uses a few registers' worth of it per step).
    """
    prims = tvm.IRModule({gv: f for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)})
    compact = tvm.ir.transform.Sequential(
        [
            st.LowerInitBlock(),
            st.PlanAndUpdateBufferAllocationLocation(),
            st.ConvertBlocksToOpaque(),
            st.CompactBufferAllocation(),
        ]
    )
    return {gv.name_hint: kernel_scratch_bytes(f, gv.name_hint) for gv, f in compact(prims).functions.items()}


def _c_floats(values: np.ndarray, per_line: int = 8) -> str:
    """float32 values as C literals that read back bit-exactly (shortest round-trip form)."""
    lits = [np.format_float_scientific(np.float32(v), unique=True, trim="-") + "f" for v in values]
    lits = [s.replace("e+", "e") for s in lits]
    return ",\n".join("    " + ", ".join(lits[i : i + per_line]) for i in range(0, len(lits), per_line))


def _c_ints(values: np.ndarray, per_line: int = 16) -> str:
    """int8 codes as C literals."""
    lits = [str(int(v)) for v in values]
    return ",\n".join("    " + ", ".join(lits[i : i + per_line]) for i in range(0, len(lits), per_line))


def generate_c(chain: KernelChain, arena: int, header: str, workspace_slots: bool) -> str:
    """The driver C file for ``chain`` with a workspace arena of ``arena`` bytes (see pae_mcu_model.h).

    ``workspace_slots``: the kernels object defines the allocator slots ``__TVMBackend*Workspace``
    (it does when some buffer outgrows the stack). They are filled, never defined here: the object
    addresses its own copy directly, so a second definition would be a different, empty slot.
    """
    deep = [i for i, t in enumerate(chain.tensors) if len(t.shape) > 4]
    if deep:
        raise ExportError(f"tensor {deep[0]} has rank {len(chain.tensors[deep[0]].shape)}: the driver supports 0 to 4")
    kernels = sorted({name for name, _ in chain.calls})
    w_floats, t_floats = chain.floats(CONSTANT), chain.floats(INPUT) + chain.floats(INTERMEDIATE)
    codes = sum(t.numel for t in chain.tensors if t.kind == CONSTANT and t.dtype == "int8")
    weights = (
        f"{w_floats} floats ({4 * w_floats} bytes, flash)"
        if not codes
        else (f"{codes} int8 codes and {w_floats} floats ({chain.nbytes(CONSTANT)} bytes, flash)")
    )
    obs_dim, act_dim = chain.tensors[chain.input].numel, chain.tensors[chain.output].numel
    out = [f"/* {line} */" if line else "" for line in header.splitlines()]
    out += [
        f"/* {len(chain.calls)} kernel calls; weights {weights}; tensors "
        f"{t_floats} floats ({4 * t_floats} bytes, RAM);",
        f" * workspace arena {arena} bytes (RAM), the largest scratch need of one kernel, computed at export. */",
        "#include <stdint.h>",
        "#include <string.h>",
        "#include <tvm/ffi/c_api.h>",
        "",
        '#include "pae_mcu_model.h"',
        "",
        f"const int pae_mcu_obs_dim = {obs_dim}, pae_mcu_act_dim = {act_dim};",
        f"const size_t pae_mcu_arena_bytes = {arena};",
        "",
        "/* The kernels, compiled by TVM into the kernels object (TVM FFI calling convention). */",
    ]
    out += [
        f"int __tvm_ffi_{k}(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* result);" for k in kernels
    ]
    out += ["", "/* Folded weights and biases, in flash. */"]
    for i, t in enumerate(chain.tensors):
        if t.kind == CONSTANT:
            assert t.data is not None  # kernel_chain gives every constant its values
            if t.dtype == "int8":  # weight-only int8: the kernel converts each code to float inside its sum
                out += [
                    f"static const int8_t c{i}[{t.numel}] __attribute__((aligned(64))) = {{  /* {t.shape} */",
                    _c_ints(t.data),
                    "};",
                ]
                continue
            out += [
                f"static const float c{i}[{t.numel}] __attribute__((aligned(64))) = {{  /* {t.shape} */",
                _c_floats(t.data),
                "};",
            ]
    out += ["", "/* The input and every kernel's result: one static buffer each, in RAM. */"]
    for i, t in enumerate(chain.tensors):
        if t.kind != CONSTANT:
            out.append(f"static float t{i}[{t.numel}] __attribute__((aligned(64)));  /* {t.kind} {t.shape} */")
    out += ["", "static const int64_t shapes[][4] = {"]
    out += [f"    {{{', '.join(str(d) for d in t.shape) or '0'}}},  /* {i} */" for i, t in enumerate(chain.tensors)]
    out += [
        "};",
        "",
        "/* DLTensor views of the buffers: const, the kernels only read them (and write the data). */",
        "#define TENSOR(ptr, i, ndim) {(void*)(ptr), {kDLCPU, 0}, (ndim), {kDLFloat, 32, 1}, "
        "(int64_t*)shapes[i], NULL, 0}",
    ]
    if codes:
        out.append(
            "#define TENSOR_I8(ptr, i, ndim) {(void*)(ptr), {kDLCPU, 0}, (ndim), {kDLInt, 8, 1}, "
            "(int64_t*)shapes[i], NULL, 0}"
        )
    out.append("static const DLTensor tensors[] = {")
    for i, t in enumerate(chain.tensors):
        buf = f"c{i}" if t.kind == CONSTANT else f"t{i}"
        out.append(f"    {'TENSOR_I8' if t.dtype == 'int8' else 'TENSOR'}({buf}, {i}, {len(t.shape)}),")
    out += ["};", "#define ARG(i) {.type_index = kTVMFFIDLTensorPtr, .v_ptr = (void*)&tensors[i]}"]
    for c, (_name, args) in enumerate(chain.calls):
        out.append(f"static const TVMFFIAny args{c}[] = {{{', '.join(f'ARG({a})' for a in args)}}};")
    out += [
        "",
        "typedef int (*kernel_fn)(void*, const TVMFFIAny*, int32_t, TVMFFIAny*);",
        "static const struct { kernel_fn fn; const TVMFFIAny* args; int32_t n; const char* name; } calls[] = {",
    ]
    out += [f'    {{__tvm_ffi_{name}, args{c}, {len(args)}, "{name}"}},' for c, (name, args) in enumerate(chain.calls)]
    out += [
        "};",
        "",
        ARENA_AND_DRIVER.replace("@ARENA@", str(max(arena, ARENA_ALIGN)))
        .replace("@ALIGN@", str(ARENA_ALIGN))
        .replace("@SLOTS@", SLOTS if workspace_slots else "")
        .replace("@FILL@", FILL if workspace_slots else "    /* the kernels need no workspace */")
        .replace("@IN@", f"t{chain.input}")
        .replace("@OUT@", f"t{chain.output}"),
    ]
    return "\n".join(out) + "\n"


ARENA_AND_DRIVER = r"""/* Workspace: TVM's kernels ask for scratch buffers above their stack limit through two function
 * pointers that TVM's runtime fills when it loads a library. Here a bump allocator over a static
 * arena answers them; it is reset before every kernel (their buffers never outlive the call). */
static uint8_t arena[@ARENA@] __attribute__((aligned(@ALIGN@)));
static size_t arena_used, arena_peak;
static const char* last_error = "";

@SLOTS@
static void* arena_alloc(int device_type, int device_id, uint64_t nbytes, int code_hint, int bits_hint) {
    (void)device_type; (void)device_id; (void)code_hint; (void)bits_hint;
    uint64_t need = (nbytes + @ALIGN@u - 1u) / @ALIGN@u * @ALIGN@u;
    if (need > sizeof arena - arena_used) return NULL; /* the kernel reports the failure */
    void* p = arena + arena_used;
    arena_used += (size_t)need;
    if (arena_used > arena_peak) arena_peak = arena_used;
    return p;
}

static int arena_free(int device_type, int device_id, void* ptr) {
    (void)device_type; (void)device_id; (void)ptr;
    return 0;
}

/* What the kernels call when a check fails (wrong shape, no workspace): keep the message's kind. */
void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {
    last_error = n > 0 && parts[0] ? parts[0] : (kind ? kind : "error");
}

void TVMFFIErrorSetRaisedFromCStr(const char* kind, const char* message) {
    last_error = message ? message : (kind ? kind : "error");
}

void pae_mcu_init(void) {
@FILL@
}

int pae_mcu_infer(const float* obs, float* act) {
    memcpy(@IN@, obs, sizeof @IN@);
    for (size_t i = 0; i < sizeof calls / sizeof calls[0]; i++) {
        TVMFFIAny result;
        memset(&result, 0, sizeof result);
        arena_used = 0;
        if (calls[i].fn(NULL, calls[i].args, calls[i].n, &result) != 0) return (int)i + 1;
    }
    memcpy(act, @OUT@, sizeof @OUT@);
    return 0;
}

const char* pae_mcu_last_error(void) { return last_error; }

size_t pae_mcu_arena_peak(void) { return arena_peak; }"""


SLOTS = """extern void* (*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int);
extern int (*__TVMBackendFreeWorkspace)(int, int, void*);
"""
FILL = """    __TVMBackendAllocWorkspace = arena_alloc;
    __TVMBackendFreeWorkspace = arena_free;"""
