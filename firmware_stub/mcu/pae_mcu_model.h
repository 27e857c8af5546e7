/* pae_mcu_model.h - the controller as generated C (export/mcu/firmware.py writes <target>_model.c per bundle).
 *
 * The generated file holds the folded weights as static const arrays (flash), one static buffer per
 * intermediate tensor, a fixed workspace arena sized at export time, and calls TVM's compiled
 * kernels (__tvm_ffi_<name>, linked from the kernels object) in the order of the compiled graph.
 * No malloc, no runtime, no file system: the same file builds for the board and for the host. */
#ifndef PAE_MCU_MODEL_H
#define PAE_MCU_MODEL_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
extern const int pae_mcu_obs_dim, pae_mcu_act_dim;
extern const size_t pae_mcu_arena_bytes; /* the arena size computed at export time */
/* Point the kernels' workspace-allocator slots at the arena; call once before pae_mcu_infer. */
void pae_mcu_init(void);
/* act[0..act_dim) = controller(obs[0..obs_dim)). Returns 0, or the 1-based index of the kernel that
 * failed (its message in pae_mcu_last_error()). */
int pae_mcu_infer(const float* obs, float* act);
const char* pae_mcu_last_error(void);
/* Most arena bytes one kernel has held so far (never more than pae_mcu_arena_bytes). */
size_t pae_mcu_arena_peak(void);
#ifdef __cplusplus
}
#endif
#endif
