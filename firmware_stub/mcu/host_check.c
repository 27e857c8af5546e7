/* host_check.c - run the generated controller C on the host: float32 observation rows on stdin,
 * float32 action rows on stdout, then "arena_peak_bytes N" on stderr. export/mcu/firmware.py builds it with
 * the kernels compiled for the host, to check the generated C against onnxruntime before the board. */
#include <stdio.h>
#include <stdlib.h>

#include "pae_mcu_model.h"

#define MAX_OBS 16384 /* the largest observation of the protocol's multi-part requests (the Linux stub's) */
#define MAX_ACT 64    /* one reply frame */

int main(void) {
    static float obs[MAX_OBS];
    float act[MAX_ACT];
    if (pae_mcu_obs_dim > MAX_OBS || pae_mcu_act_dim > MAX_ACT) {
        fprintf(stderr, "obs_dim %d or act_dim %d over %d / %d\n", pae_mcu_obs_dim, pae_mcu_act_dim, MAX_OBS, MAX_ACT);
        return 2;
    }
    pae_mcu_init();
    while (fread(obs, sizeof(float), (size_t)pae_mcu_obs_dim, stdin) == (size_t)pae_mcu_obs_dim) {
        int rc = pae_mcu_infer(obs, act);
        if (rc) {
            fprintf(stderr, "kernel %d failed: %s\n", rc, pae_mcu_last_error());
            return 1;
        }
        fwrite(act, sizeof(float), (size_t)pae_mcu_act_dim, stdout);
    }
    fprintf(stderr, "arena_peak_bytes %zu\n", pae_mcu_arena_peak());
    return 0;
}
