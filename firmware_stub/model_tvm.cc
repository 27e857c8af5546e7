// model_tvm.cc - run a Relax VM executable library through the TVM runtime.
// Only the tvm_ffi headers are included: the runtime's own headers are not all in the wheels,
// and the VM is reached through the functions it registers ("vm_load_executable", ...).
#include <dlpack/dlpack.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "model.h"

namespace ffi = tvm::ffi;

namespace {

struct CpuAlloc {
    void AllocData(DLTensor* t) {
        size_t bytes = ffi::GetDataSize(*t);
        t->data = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
        if (!t->data) throw std::bad_alloc();
    }
    void FreeData(DLTensor* t) { std::free(t->data); }
};

constexpr int kPooledAllocator = 2;  // tvm.runtime.vm.VirtualMachine.POOLED_ALLOCATOR

struct State {
    std::optional<ffi::Module> lib, vm;
    std::optional<ffi::Function> main;
    std::optional<ffi::Tensor> input;
    int obs_dim = 0, act_dim = 0;
};
State* g_state = nullptr;

void set_err(char* err, size_t errlen, const char* what, const char* detail) {
    std::snprintf(err, errlen, "%s: %s", what, detail);
}

}  // namespace

extern "C" int pae_model_load(const char* path, const char* plan, const char*, int obs_dim, int act_dim, char* err,
                              size_t errlen) {
    if (plan) {
        set_err(err, errlen, plan, "a kernel plan is for the runtime-free build; this stub uses the TVM runtime");
        return -1;
    }
    try {
        auto* s = new State();
        s->lib = ffi::Module::LoadFromFile(path);
        auto load = (*s->lib)->GetFunction("vm_load_executable");
        if (!load) {
            set_err(err, errlen, path, "not a Relax VM executable (no vm_load_executable)");
            return -1;
        }
        s->vm = (*load)().cast<ffi::Module>();
        auto init = (*s->vm)->GetFunction("vm_initialization");
        if (!init) {
            set_err(err, errlen, path, "VM has no vm_initialization");
            return -1;
        }
        (*init)(static_cast<int>(kDLCPU), 0, kPooledAllocator);
        auto main = (*s->vm)->GetFunction("main");
        if (!main) {
            set_err(err, errlen, path, "module has no function 'main'");
            return -1;
        }
        s->main = *main;
        int64_t shape[2] = {1, obs_dim};
        s->input = ffi::Tensor::FromNDAlloc(CpuAlloc(), ffi::ShapeView(shape, 2), DLDataType{kDLFloat, 32, 1},
                                            DLDevice{kDLCPU, 0});
        s->obs_dim = obs_dim;
        s->act_dim = act_dim;
        g_state = s;
        return 0;
    } catch (const std::exception& e) {
        set_err(err, errlen, path, e.what());
        return -1;
    }
}

extern "C" int pae_model_infer(const float* obs, float* act, char* err, size_t errlen) {
    State* s = g_state;
    if (!s) {
        set_err(err, errlen, "model", "not loaded");
        return -1;
    }
    try {
        std::memcpy(s->input->data_ptr(), obs, sizeof(float) * s->obs_dim);
        ffi::Any out = (*s->main)(*s->input);
        auto t = out.try_cast<ffi::Tensor>();
        if (!t) {
            // A Relax function with a tuple return gives an Array; take its first tensor.
            auto arr = out.try_cast<ffi::Array<ffi::Any>>();
            if (arr && !arr->empty()) t = (*arr)[0].try_cast<ffi::Tensor>();
        }
        if (!t) {
            set_err(err, errlen, "main", "did not return a tensor");
            return -1;
        }
        const DLTensor* dl = t->GetDLTensorPtr();
        if (dl->dtype.code != kDLFloat || dl->dtype.bits != 32 || ffi::GetDataSize(*dl) != sizeof(float) * s->act_dim) {
            char msg[160];
            std::snprintf(msg, sizeof msg, "returned %zu bytes of dtype code %d bits %d, expected %d float32",
                          static_cast<size_t>(ffi::GetDataSize(*dl)), dl->dtype.code, dl->dtype.bits, s->act_dim);
            set_err(err, errlen, "main", msg);
            return -1;
        }
        std::memcpy(act, static_cast<const char*>(dl->data) + dl->byte_offset, sizeof(float) * s->act_dim);
        return 0;
    } catch (const std::exception& e) {
        set_err(err, errlen, "inference", e.what());
        return -1;
    }
}

extern "C" const char* pae_model_runtime(void) { return "tvm-relax-vm"; }
