/* fw_main.c - the firmware: serve the frame protocol (../PROTOCOL.md) on UART0 with the generated
 * controller (pae_mcu_model.h). Same replies as the Linux stub's `serve`, with these differences:
 *   - aux (inference time in ns) is read from SysTick at PAE_SYSTICK_HZ (the MPS2 boards' 25 MHz).
 *     qemu does not model cycles (nor the DWT cycle counter, which reads 0 there); under
 *     `qemu-system-arm -icount shift=0` its clock advances 1 ns per instruction, so aux counts the
 *     instructions the inference executed (to SysTick's 40 ns resolution), not cycles;
 *   - no deadline; the frame timeout (a frame whose bytes stop for PAE_FRAME_TIMEOUT_MS is answered
 *     "truncated" and dropped) runs on the same SysTick clock, so under -icount it is virtual time;
 *   - STATS appends two values after the seven counters: arena_peak_bytes (most workspace bytes a
 *     kernel held) and stack_peak_bytes (deepest stack use seen, from a painted stack).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../frame.h"
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
#define N_STATS (PAE_S_COUNT + 2)

extern uint32_t __stack_bottom, __stack_top;

static pae_parser parser;
static uint32_t actions, errors, last_seq;
static int have_seq;
static float safe_action[PAE_MAX_FLOATS]; /* zeros: what the actuator applies after an error */

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

static void send(uint8_t type, uint8_t code, uint32_t seq, uint32_t aux, const float* v, size_t n) {
    static uint8_t out[PAE_MAX_FRAME];
    size_t len = pae_encode(out, sizeof out, type, code, seq, aux, v, n);
    pae_uart_write(out, len);
}

static void error_reply(int code, uint32_t seq, uint32_t aux) {
    errors++;
    send(PAE_T_ERROR, (uint8_t)code, seq, aux, safe_action, (size_t)pae_mcu_act_dim);
}

static void on_frame(const pae_frame* f) {
    if (f->type == PAE_T_HELLO) {
        have_seq = 0;
        float info[3] = {PAE_PROTOCOL_VERSION, (float)pae_mcu_obs_dim, (float)pae_mcu_act_dim};
        send(PAE_T_HELLO, 0, f->seq, 0, info, 3);
        return;
    }
    if (f->type == PAE_T_STATS) {
        float s[N_STATS] = {0};
        s[PAE_S_FRAMES_OK] = (float)parser.frames_ok;
        s[PAE_S_CRC_ERRORS] = (float)parser.crc_errors;
        s[PAE_S_RESYNCS] = (float)parser.resyncs;
        s[PAE_S_SKIPPED_BYTES] = (float)parser.skipped_bytes;
        s[PAE_S_ACTIONS] = (float)actions;
        s[PAE_S_ERRORS] = (float)errors;
        s[PAE_S_COUNT] = (float)pae_mcu_arena_peak();
        s[PAE_S_COUNT + 1] = (float)stack_peak_bytes();
        send(PAE_T_STATS, 0, f->seq, 0, s, N_STATS);
        return;
    }
    if (f->type != PAE_T_OBS) {
        error_reply(PAE_E_BAD_TYPE, f->seq, 0);
        return;
    }
    if (f->len != 4u * (unsigned)pae_mcu_obs_dim) {
        error_reply(PAE_E_WRONG_SIZE, f->seq, 0);
        return;
    }
    /* Serial-number order: a seq not ahead of the last accepted one is stale or replayed. */
    if (have_seq && (int32_t)(f->seq - last_seq) <= 0) {
        error_reply(PAE_E_OUT_OF_ORDER, f->seq, 0);
        return;
    }
    have_seq = 1;
    last_seq = f->seq;
    for (int i = 0; i < pae_mcu_obs_dim; i++)
        if (!isfinite(f->payload[i])) {
            error_reply(PAE_E_NONFINITE, f->seq, 0);
            return;
        }
    float act[PAE_MAX_FLOATS];
    uint32_t t0 = SYST_CVR;
    int rc = pae_mcu_infer(f->payload, act);
    uint32_t aux = ticks_to_ns(t0, SYST_CVR);
    if (rc != 0) {
        error_reply(PAE_E_INFERENCE, f->seq, aux);
        return;
    }
    for (int i = 0; i < pae_mcu_act_dim; i++)
        if (!isfinite(act[i])) {
            error_reply(PAE_E_INFERENCE, f->seq, aux);
            return;
        }
    actions++;
    send(PAE_T_ACTION, 0, f->seq, aux, act, (size_t)pae_mcu_act_dim);
}

int main(void) {
    paint_stack();
    pae_uart_init();
    systick_start();
    pae_mcu_init();
    pae_parser_init(&parser);
    static pae_frame frame;
    const uint32_t ticks_per_ms = PAE_SYSTICK_HZ / 1000u;
    uint32_t mark = SYST_CVR, idle_ms = 0; /* time since the last byte, counted as SysTick passes (it wraps) */
    for (;;) {
        int c = pae_uart_getc();
        if (c >= 0) {
            uint8_t b = (uint8_t)c;
            pae_parser_write(&parser, &b, 1);
            mark = SYST_CVR;
            idle_ms = 0;
        } else {
            uint32_t ms = ((mark - SYST_CVR) & 0xFFFFFFu) / ticks_per_ms; /* SysTick counts down */
            idle_ms += ms;
            mark = (mark - ms * ticks_per_ms) & 0xFFFFFFu;
            if (idle_ms < PAE_FRAME_TIMEOUT_MS || !pae_parser_pending(&parser)) continue;
            /* the bytes of a frame stopped coming: answer it, drop it, look again behind its magic */
            if (pae_parser_truncate(&parser, &frame) == PAE_E_TRUNCATED) error_reply(PAE_E_TRUNCATED, frame.seq, 0);
            idle_ms = 0;
        }
        for (;;) {
            int r = pae_parser_next(&parser, &frame);
            if (r == PAE_NEED_MORE) break;
            if (r == PAE_FRAME) on_frame(&frame);
            else error_reply(r, frame.seq, 0);
        }
    }
}
