/* model.h - the controller as the stub sees it: load once, then infer one observation at a time.
 * Two implementations, one per build (Makefile MODEL=tvm|kernels):
 *   model_tvm.cc     the TVM runtime runs the Relax VM executable library (x86_64, aarch64);
 *   model_kernels.c  no runtime: the library's compiled kernels are called in the order of a plan
 *                    file made by export/stub.py (armv7, where no TVM runtime build exists). */
#ifndef PAE_MODEL_H
#define PAE_MODEL_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
/* Load the compiled library at path (plan: the kernel plan file, NULL for the TVM runtime build).
 * lib_sha256 is the verified digest of the library; a plan made for another library is refused.
 * Returns 0, or -1 with a message in err. */
int pae_model_load(const char* path, const char* plan, const char* lib_sha256, int obs_dim, int act_dim, char* err,
                   size_t errlen);
/* act[0..act_dim) = model(obs[0..obs_dim)). Returns 0, or -1 with a message in err. */
int pae_model_infer(const float* obs, float* act, char* err, size_t errlen);
/* Name of the runtime behind this build, for reports. */
const char* pae_model_runtime(void);
#ifdef __cplusplus
}
#endif
#endif
