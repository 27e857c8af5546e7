"""Plain C of a full-integer controller (:class:`export.mcu.int_model.IntModel`): no float arithmetic at all.

The file implements ``pae_mcu_model.h`` (the interface the firmware's frame server calls), so it links
into the same firmware as the TVM-built driver. Observations arrive as float32 and actions leave as
float32 (the frame protocol's format), but both conversions are integer operations on the IEEE-754
bits (``memcpy`` to a ``uint32_t``, shifts, one 64-bit product; ``__builtin_clz`` for the output):
no soft-float routine (``__aeabi_f*``/``__aeabi_d*``) is called on the inference path. Every
operation is the one :meth:`IntModel.act` does on the host, so device and host agree bit for bit.
"""

from __future__ import annotations

import numpy as np

from export.mcu.int_model import QMAX, IntModel

_RUNTIME = r"""
/* round(x * m * 2^-n) of a float32 given as its bits, half away from zero, clamped to [-127, 127] */
static int32_t quantize_input(uint32_t bits, int32_t m, int32_t n) {
    int32_t e = (int32_t)((bits >> 23) & 0xFFu);
    uint32_t frac = bits & 0x7FFFFFu;
    uint32_t mant = e == 0 ? frac : (frac | 0x800000u);
    if (e == 0) e = 1;
    int32_t mag;
    if (e == 0xFF) {
        mag = QMAX;
    } else {
        uint64_t prod = (uint64_t)mant * (uint64_t)(uint32_t)m;
        int32_t t = 150 + n - e;
        if (prod == 0 || t > 62) mag = 0;
        else if (t <= 0) mag = QMAX;
        else {
            uint64_t q = (prod + ((uint64_t)1 << (t - 1))) >> t;
            mag = q > (uint64_t)QMAX ? QMAX : (int32_t)q;
        }
    }
    return (bits >> 31) ? -mag : mag;
}

/* clamp(floor(acc * m * 2^-n + 1/2), -LUT_HALF, LUT_HALF) + LUT_HALF: the activation table's index */
static int32_t table_index(int32_t acc, int32_t m, int32_t n) {
    int64_t p = ((int64_t)acc * m + ((int64_t)1 << (n - 1))) >> n;
    if (p < -LUT_HALF) p = -LUT_HALF;
    if (p > LUT_HALF) p = LUT_HALF;
    return (int32_t)p + LUT_HALF;
}

/* v * 2^-OUT_Q as a float32, assembled from integers (exact: |v| < 2^24) */
static float fixed_to_float(int32_t v) {
    uint32_t bits = 0;
    if (v != 0) {
        uint32_t sign = v < 0 ? 0x80000000u : 0u;
        uint32_t u = v < 0 ? (uint32_t)(-(int64_t)v) : (uint32_t)v;
        int32_t msb = 31 - __builtin_clz(u);
        uint32_t mant = u << (23 - msb);
        bits = sign | ((uint32_t)(msb - OUT_Q + 127) << 23) | (mant & 0x7FFFFFu);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* out[j] = bias[j] + sum_i w[j][i] * x[i] (int32), then its table index */
static void dense(const int8_t* x, int32_t n_in, const int8_t* w, const int32_t* bias, const int32_t* mult,
                  const int8_t* shift, int32_t n_out, int16_t* index) {
    for (int32_t j = 0; j < n_out; j++) {
        const int8_t* row = w + j * n_in;
        int32_t acc = bias[j];
        for (int32_t i = 0; i < n_in; i++) acc += (int32_t)row[i] * (int32_t)x[i];
        index[j] = (int16_t)table_index(acc, mult[j], shift[j]);
    }
}
"""


def _array(ctype: str, name: str, values: np.ndarray, per_line: int = 24) -> str:
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(map(str, flat[i : i + per_line])) for i in range(0, len(flat), per_line)]
    body = ",\n    ".join(lines) if lines else "0"
    return f"static const {ctype} {name}[{max(1, len(flat))}] = {{\n    {body}\n}};\n"


def generate_int_c(model: IntModel, header: str) -> str:
    """The C file of ``model`` (implements ``pae_mcu_model.h``); ``header`` becomes its leading comment."""
    widths = [model.obs_dim] + [layer.weight.shape[0] for layer in model.layers]
    out = [
        "/* " + header.replace("*/", "* /").replace("\n", "\n * ") + " */",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "#include <string.h>",
        '#include "pae_mcu_model.h"',
        "",
        f"#define QMAX {QMAX}",
        f"#define LUT_HALF {model.lut_half}",
        f"#define OUT_Q {model.out_q}",
        f"const int pae_mcu_obs_dim = {model.obs_dim}, pae_mcu_act_dim = {model.act_dim};",
        "const size_t pae_mcu_arena_bytes = 0; /* no workspace: every buffer is static */",
        "",
        _array("int32_t", "in_mult", model.in_mult),
        _array("int8_t", "in_shift", model.in_shift),
    ]
    for k, layer in enumerate(model.layers):
        out += [
            f"/* layer {k}: {layer.weight.shape[1]} -> {layer.weight.shape[0]}, grid step {layer.step:.6g} */",
            _array("int8_t", f"w{k}", layer.weight),
            _array("int32_t", f"b{k}", layer.bias),
            _array("int32_t", f"m{k}", layer.mult),
            _array("int8_t", f"n{k}", layer.shift),
            _array("int8_t" if k < len(model.layers) - 1 else "int32_t", f"t{k}", layer.table),
        ]
    widest = max(widths)
    out += [
        f"static int8_t act_a[{widest}], act_b[{widest}];",
        f"static int16_t index_buf[{widest}];",
        _RUNTIME,
        "void pae_mcu_init(void) {}",
        'const char* pae_mcu_last_error(void) { return ""; }',
        "size_t pae_mcu_arena_peak(void) { return 0; }",
        "",
        "int pae_mcu_infer(const float* obs, float* act) {",
        "    int8_t* x = act_a;",
        "    int8_t* y = act_b;",
        f"    for (int32_t i = 0; i < {model.obs_dim}; i++) {{",
        "        uint32_t bits;",
        "        memcpy(&bits, &obs[i], sizeof bits);",
        "        x[i] = (int8_t)quantize_input(bits, in_mult[i], in_shift[i]);",
        "    }",
    ]
    last = len(model.layers) - 1
    for k, layer in enumerate(model.layers):
        n_out, n_in = layer.weight.shape
        out.append(f"    dense(x, {n_in}, w{k}, b{k}, m{k}, n{k}, {n_out}, index_buf);")
        if k < last:
            out += [
                f"    for (int32_t j = 0; j < {n_out}; j++) y[j] = t{k}[index_buf[j]];",
                "    { int8_t* s = x; x = y; y = s; }",
            ]
        else:
            out.append(
                f"    for (int32_t j = 0; j < {n_out}; j++) act[j] = fixed_to_float(t{k}[j * {2 * model.lut_half + 1} + index_buf[j]]);"
            )
    out += ["    return 0;", "}", ""]
    return "\n".join(out)
