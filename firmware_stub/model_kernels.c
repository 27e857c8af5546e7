/* model_kernels.c - run a bundle's compiled kernels without the TVM runtime.
 *
 * For every Linux target (armv7 has no TVM runtime build; on x86_64 and aarch64 it is faster than the
 * Relax VM, which costs about 1.2 us per call), export/stub.py lowers the bundle's model.onnx
 * through the same TVM pipeline that compiled the library and writes a plan: the tensors (input,
 * folded weights, intermediates) and the kernel calls of the Relax main function, in order. This
 * file dlopens the hash-checked library and calls its kernels (exported as __tvm_ffi_<name>, the
 * TVM FFI calling convention) on DLTensors it owns. The kernels need only expf, the error setter
 * and the workspace allocator, which this file provides (the stub is linked with -rdynamic).
 *
 * Plan file, little-endian:
 *   "PAEP" u32 version(1) char lib_sha256[64]
 *   u32 n_tensors; per tensor: u32 kind (0 input, 1 constant, 2 intermediate, 3 int8 constant), u32 ndim (0: a scalar),
 *                              u32 shape[ndim], then constant only: float32 data[prod(shape)] (kind 1) or int8 data[prod(shape)]
 *                              (kind 3: weight-only int8 codes, which the kernel converts to float inside its sum)
 *   u32 n_calls;   per call:   u32 name_len, char name[name_len], u32 n_args, u32 tensor[n_args]
 *   u32 output_tensor
 */
#include <dlfcn.h>
#include <dlpack/dlpack.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tvm/ffi/c_api.h>

#include "model.h"

#define MAX_TENSORS 256
#define MAX_CALLS 128
#define MAX_ARGS 16
#define MAX_DIMS 4

typedef struct {
    DLTensor t;
    int64_t shape[MAX_DIMS];
    size_t numel;
} tensor;

typedef struct {
    TVMFFISafeCallType fn;
    char name[256];  /* TVM names fused kernels after every op they fuse: 166 characters in the TD-MPC planner step */
    int n_args;
    TVMFFIAny args[MAX_ARGS];
} call;

static tensor g_tensors[MAX_TENSORS];
static call g_calls[MAX_CALLS];
static int g_n_tensors, g_n_calls, g_input = -1, g_output = -1, g_obs_dim, g_act_dim;
static char g_last_error[512];

/* --- what the kernels import -------------------------------------------------------------- */

void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int32_t n) {
    size_t len = (size_t)snprintf(g_last_error, sizeof g_last_error, "%s: ", kind ? kind : "Error");
    for (int32_t i = 0; i < n && len < sizeof g_last_error; i++)
        if (parts[i]) len += (size_t)snprintf(g_last_error + len, sizeof g_last_error - len, "%s", parts[i]);
}

void TVMFFIErrorSetRaisedFromCStr(const char* kind, const char* message) {
    snprintf(g_last_error, sizeof g_last_error, "%s: %s", kind ? kind : "Error", message ? message : "");
}

/* Workspace: a kernel asks for its scratch buffers (a register tile's accumulators when they outgrow
 * TVM's stack limit, a row's partial sums) on every call and frees them in reverse order before it
 * returns. A bump arena answers in a few instructions where malloc/free cost about 0.1 us per kernel;
 * a request the arena cannot hold falls back to the heap. */
#define ARENA_BYTES (1u << 20)
static uint8_t g_arena[ARENA_BYTES] __attribute__((aligned(64)));
static size_t g_arena_used;

void* TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int code_hint, int bits_hint) {
    (void)device_type; (void)device_id; (void)code_hint; (void)bits_hint;
    uint64_t need = (nbytes + 63) / 64 * 64;
    if (need <= ARENA_BYTES - g_arena_used) {
        void* p = g_arena + g_arena_used;
        g_arena_used += (size_t)need;
        return p;
    }
    return aligned_alloc(64, (size_t)need);
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void* ptr) {
    (void)device_type; (void)device_id;
    uint8_t* p = (uint8_t*)ptr;
    if (p >= g_arena && p < g_arena + ARENA_BYTES) {
        g_arena_used = (size_t)(p - g_arena);  /* frees are last-in first-out: everything above goes too */
        return 0;
    }
    free(ptr);
    return 0;
}

/* --- plan ---------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t* p;
    const uint8_t* end;
} reader;

static int rd(reader* r, void* out, size_t n) {
    if ((size_t)(r->end - r->p) < n) return -1;
    memcpy(out, r->p, n);
    r->p += n;
    return 0;
}

static int rd_u32(reader* r, uint32_t* v) {
    uint8_t b[4];
    if (rd(r, b, 4)) return -1;
    *v = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
    return 0;
}

static int fail(char* err, size_t errlen, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_plan(const uint8_t* data, size_t n, const char* lib_sha, void* lib, char* err, size_t errlen) {
    reader r = {data, data + n};
    char magic[4], sha[65] = {0};
    uint32_t version, count;
    if (rd(&r, magic, 4) || memcmp(magic, "PAEP", 4) || rd_u32(&r, &version) || version != 1 || rd(&r, sha, 64))
        return fail(err, errlen, "not a version-1 kernel plan");
    if (strcmp(sha, lib_sha) != 0) return fail(err, errlen, "made for library sha256 %s, not this library's %s", sha, lib_sha);
    if (rd_u32(&r, &count) || count == 0 || count > MAX_TENSORS) return fail(err, errlen, "bad tensor count");
    for (uint32_t i = 0; i < count; i++) {
        tensor* t = &g_tensors[i];
        uint32_t kind, ndim;
        if (rd_u32(&r, &kind) || kind > 3 || rd_u32(&r, &ndim) || ndim > MAX_DIMS)  /* rank 0: a scalar (Clip's bounds) */
            return fail(err, errlen, "tensor %u: bad kind or rank", i);
        t->numel = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            uint32_t s;
            if (rd_u32(&r, &s) || s == 0 || s > (1u << 24)) return fail(err, errlen, "tensor %u: bad shape", i);
            t->shape[d] = s;
            t->numel *= s;
        }
        if (t->numel > (1u << 26)) return fail(err, errlen, "tensor %u: too large", i);
        t->t.data = aligned_alloc(64, (t->numel * 4 + 63) / 64 * 64);
        if (!t->t.data) return fail(err, errlen, "out of memory");
        t->t.device.device_type = kDLCPU;
        t->t.device.device_id = 0;
        t->t.ndim = (int32_t)ndim;
        t->t.dtype.code = kind == 3 ? kDLInt : kDLFloat;
        t->t.dtype.bits = kind == 3 ? 8 : 32;
        t->t.dtype.lanes = 1;
        t->t.shape = t->shape;
        t->t.strides = NULL;
        t->t.byte_offset = 0;
        if (kind == 1 && rd(&r, t->t.data, t->numel * 4)) return fail(err, errlen, "tensor %u: data cut short", i);
        if (kind == 3 && rd(&r, t->t.data, t->numel)) return fail(err, errlen, "tensor %u: data cut short", i);
        if (kind == 0) g_input = (int)i;
    }
    g_n_tensors = (int)count;
    if (rd_u32(&r, &count) || count == 0 || count > MAX_CALLS) return fail(err, errlen, "bad call count");
    for (uint32_t i = 0; i < count; i++) {
        call* c = &g_calls[i];
        uint32_t len, nargs;
        if (rd_u32(&r, &len) || len == 0 || len >= sizeof c->name - 1 || rd(&r, c->name, len))
            return fail(err, errlen, "call %u: bad kernel name", i);
        c->name[len] = 0;
        char sym[sizeof c->name + 16];
        snprintf(sym, sizeof sym, "__tvm_ffi_%s", c->name);
        c->fn = (TVMFFISafeCallType)dlsym(lib, sym);
        if (!c->fn) return fail(err, errlen, "kernel %s is not in the library", c->name);
        if (rd_u32(&r, &nargs) || nargs == 0 || nargs > MAX_ARGS) return fail(err, errlen, "call %s: bad arity", c->name);
        c->n_args = (int)nargs;
        for (uint32_t a = 0; a < nargs; a++) {
            uint32_t ti;
            if (rd_u32(&r, &ti) || ti >= (uint32_t)g_n_tensors) return fail(err, errlen, "call %s: bad tensor index", c->name);
            memset(&c->args[a], 0, sizeof c->args[a]);
            c->args[a].type_index = kTVMFFIDLTensorPtr;
            c->args[a].v_ptr = &g_tensors[ti].t;
        }
    }
    g_n_calls = (int)count;
    uint32_t out;
    if (rd_u32(&r, &out) || out >= (uint32_t)g_n_tensors) return fail(err, errlen, "bad output index");
    g_output = (int)out;
    if (r.p != r.end) return fail(err, errlen, "trailing bytes");
    if (g_input < 0 || g_tensors[g_input].numel != (size_t)g_obs_dim)
        return fail(err, errlen, "input tensor does not hold obs_dim=%d floats", g_obs_dim);
    if (g_tensors[g_output].numel != (size_t)g_act_dim)
        return fail(err, errlen, "output tensor does not hold act_dim=%d floats", g_act_dim);
    return 0;
}

int pae_model_load(const char* path, const char* plan, const char* lib_sha256, int obs_dim, int act_dim, char* err,
                   size_t errlen) {
    if (!plan) return fail(err, errlen, "this runtime-free stub needs --plan (made by export/stub.py)");
    g_obs_dim = obs_dim;
    g_act_dim = act_dim;
    void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return fail(err, errlen, "dlopen: %s", dlerror());
    /* Kernels whose buffers outgrow the stack call the workspace allocator through function-pointer
     * variables that TVM's runtime fills when it loads a library; with no runtime, this file does. */
    void** alloc_slot = (void**)dlsym(lib, "__TVMBackendAllocWorkspace");
    void** free_slot = (void**)dlsym(lib, "__TVMBackendFreeWorkspace");
    if (alloc_slot) *alloc_slot = (void*)&TVMBackendAllocWorkspace;
    if (free_slot) *free_slot = (void*)&TVMBackendFreeWorkspace;
    static const char* const unsupported[] = {"__TVMBackendParallelLaunch", "__TVMBackendGetFuncFromEnv",
                                              "__TVMFFIEnvModLookupFromImports"};
    for (size_t i = 0; i < sizeof unsupported / sizeof *unsupported; i++) {
        void** slot = (void**)dlsym(lib, unsupported[i]);
        if (slot && !*slot)
            return fail(err, errlen, "%s: the library needs %s, which the runtime-free stub does not provide "
                        "(compile without parallel loops or packed calls)", path, unsupported[i] + 2);
    }
    FILE* f = fopen(plan, "rb");
    if (!f) return fail(err, errlen, "%s: cannot open", plan);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t* data = n > 0 ? (uint8_t*)malloc((size_t)n) : NULL;
    int ok = data && fread(data, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    if (!ok) {
        free(data);
        return fail(err, errlen, "%s: cannot read", plan);
    }
    char inner[400];
    int rc = parse_plan(data, (size_t)n, lib_sha256, lib, inner, sizeof inner);
    free(data);
    if (rc) return fail(err, errlen, "%s: %s", plan, inner);
    return 0;
}

int pae_model_infer(const float* obs, float* act, char* err, size_t errlen) {
    if (g_input < 0) return fail(err, errlen, "model not loaded");
    memcpy(g_tensors[g_input].t.data, obs, sizeof(float) * (size_t)g_obs_dim);
    for (int i = 0; i < g_n_calls; i++) {
        TVMFFIAny result;
        memset(&result, 0, sizeof result);
        g_last_error[0] = 0;
        if (g_calls[i].fn(NULL, g_calls[i].args, g_calls[i].n_args, &result) != 0)
            return fail(err, errlen, "kernel %s failed: %s", g_calls[i].name, g_last_error);
    }
    memcpy(act, g_tensors[g_output].t.data, sizeof(float) * (size_t)g_act_dim);
    return 0;
}

const char* pae_model_runtime(void) { return "tvm-kernels (no runtime)"; }
