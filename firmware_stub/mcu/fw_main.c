/* fw_main.c - the firmware: serve the frame protocol (../PROTOCOL.md) on UART0 with the generated
 * controller (pae_mcu_model.h). Same replies as the Linux stub's `serve` (both answer through
 * ../frame_handler.c), with these differences:
 *   - aux (inference time in ns) is read from SysTick at PAE_SYSTICK_HZ (the MPS2 boards' 25 MHz).
 *     qemu does not model cycles (nor the DWT cycle counter, which reads 0 there); under
 *     `qemu-system-arm -icount shift=0` its clock advances 1 ns per instruction, so aux counts the
 *     instructions the inference executed (to SysTick's 40 ns resolution), not cycles;
 *   - no deadline; the frame timeout (a frame whose bytes stop for PAE_FRAME_TIMEOUT_MS is answered
 *     "truncated" and dropped) runs on the same SysTick clock, so under -icount it is virtual time;
 *   - STATS appends two values after the seven counters: arena_peak_bytes (most workspace bytes a
 *     kernel held) and stack_peak_bytes (deepest stack use seen, from a painted stack).
 */
#include <stdint.h>

#include "../frame.h"
#include "../frame_handler.h"
#include "pae_mcu_model.h"
#include "uart.h"

#ifndef PAE_SYSTICK_HZ
#define PAE_SYSTICK_HZ 25000000u /* SysTick's processor clock on mps2-an386/an500 (qemu too) */
#endif
#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t*)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t*)0xE000E018u)
#ifndef PAE_FRAME_TIMEOUT_MS
#define PAE_FRAME_TIMEOUT_MS 200u /* as the Linux stub's --frame-timeout-ms default */
#endif
#define STACK_PAINT 0xA5C3A5C3u

extern uint32_t __stack_bottom, __stack_top;

static pae_handler handler; /* the replies to every frame (../frame_handler.h), shared with the Linux stub */
static float safe_action[PAE_MAX_FLOATS]; /* zeros: what the actuator applies after an error */
#ifndef PAE_MCU_REQUEST_FLOATS
#define PAE_MCU_REQUEST_FLOATS PAE_MAX_FLOATS /* export/mcu/firmware.py sets it to the bundle's obs_dim */
#endif
static float request[PAE_MCU_REQUEST_FLOATS]; /* a multi-part request is reassembled here (PROTOCOL.md) */

/* Fill the unused stack with a pattern; stack_peak_bytes() finds how far down it was overwritten. */
static void paint_stack(void) {
    uintptr_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t* p = &__stack_bottom; (uintptr_t)p < sp - 64u; p++) *p = STACK_PAINT;
}

static uint32_t stack_peak_bytes(void) {
    const uint32_t* p = &__stack_bottom;
    while (p < &__stack_top && *p == STACK_PAINT) p++;
    return (uint32_t)((uintptr_t)&__stack_top - (uintptr_t)p);
}

/* SysTick free-running over its 24 bits, counting down at the processor clock, no interrupt. */
static void systick_start(void) {
    SYST_RVR = 0xFFFFFFu;
    SYST_CVR = 0;
    SYST_CSR = 0x5u; /* enable, processor clock */
}

static uint32_t ticks_to_ns(uint32_t start, uint32_t end) {
    uint32_t ticks = (start - end) & 0xFFFFFFu; /* one wrap at most: 0.67 s at 25 MHz */
    return (uint32_t)((uint64_t)ticks * 1000000000u / PAE_SYSTICK_HZ);
}

static void uart_frame(void* ctx, const uint8_t* bytes, size_t n) {
    (void)ctx;
    pae_uart_write(bytes, n);
}

static int timed_infer(void* ctx, uint32_t seq, const float* obs, float* act, uint32_t* aux_ns, int* late) {
    (void)ctx, (void)seq, (void)late; /* no deadline on the board */
    uint32_t t0 = SYST_CVR;
    int rc = pae_mcu_infer(obs, act);
    *aux_ns = ticks_to_ns(t0, SYST_CVR);
    return rc;
}

static size_t memory_stats(void* ctx, float* out, size_t cap) {
    (void)ctx;
    if (cap < 2) return 0;
    out[0] = (float)pae_mcu_arena_peak();
    out[1] = (float)stack_peak_bytes();
    return 2;
}

int main(void) {
    paint_stack();
    pae_uart_init();
    systick_start();
    pae_mcu_init();
    const pae_device dev = {0, timed_infer, uart_frame, memory_stats};
    pae_handler_init(&handler, &dev, pae_mcu_obs_dim, pae_mcu_act_dim, safe_action);
    pae_handler_set_request_buffer(&handler, request, PAE_MCU_REQUEST_FLOATS);
    static pae_frame frame;
    const uint32_t ticks_per_ms = PAE_SYSTICK_HZ / 1000u;
    uint32_t mark = SYST_CVR, idle_ms = 0; /* time since the last byte, counted as SysTick passes (it wraps) */
    for (;;) {
        int c = pae_uart_getc();
        if (c >= 0) {
            uint8_t b = (uint8_t)c;
            pae_parser_write(&handler.parser, &b, 1);
            mark = SYST_CVR;
            idle_ms = 0;
        } else {
            uint32_t ms = ((mark - SYST_CVR) & 0xFFFFFFu) / ticks_per_ms; /* SysTick counts down */
            idle_ms += ms;
            mark = (mark - ms * ticks_per_ms) & 0xFFFFFFu;
            if (idle_ms < PAE_FRAME_TIMEOUT_MS || !pae_parser_pending(&handler.parser)) continue;
            /* the bytes of a frame stopped coming: answer it, drop it, look again behind its magic */
            if (pae_parser_truncate(&handler.parser, &frame) == PAE_E_TRUNCATED) pae_handler_take(&handler, PAE_E_TRUNCATED, &frame);
            idle_ms = 0;
        }
        for (;;) {
            int r = pae_parser_next(&handler.parser, &frame);
            if (r == PAE_NEED_MORE) break;
            pae_handler_take(&handler, r, &frame);
        }
    }
}
