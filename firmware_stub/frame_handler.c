/* frame_handler.c - the device's answer to each frame (see frame_handler.h and PROTOCOL.md). */
#include "frame_handler.h"

#include <math.h>

#define N_STATS_MAX (PAE_S_COUNT + 8) /* the seven counters and room for a program's extra values */

static void send(pae_handler* h, uint8_t type, uint8_t code, uint32_t seq, uint32_t aux, const float* v, size_t n) {
    size_t len = pae_encode(h->out, sizeof h->out, type, code, seq, aux, v, n);
    h->dev.write(h->dev.ctx, h->out, len);
}

static void error_reply(pae_handler* h, int code, uint32_t seq, uint32_t aux) {
    h->errors++;
    send(h, PAE_T_ERROR, (uint8_t)code, seq, aux, h->safe_action, (size_t)h->act_dim);
}

static void on_stats(pae_handler* h, uint32_t seq) {
    float s[N_STATS_MAX] = {0};
    s[PAE_S_FRAMES_OK] = (float)h->parser.frames_ok;
    s[PAE_S_CRC_ERRORS] = (float)h->parser.crc_errors;
    s[PAE_S_RESYNCS] = (float)h->parser.resyncs;
    s[PAE_S_SKIPPED_BYTES] = (float)h->parser.skipped_bytes;
    s[PAE_S_ACTIONS] = (float)h->actions;
    s[PAE_S_ERRORS] = (float)h->errors;
    s[PAE_S_DEADLINE_MISSES] = (float)h->deadline_misses;
    size_t n = PAE_S_COUNT;
    if (h->dev.extra_stats) n += h->dev.extra_stats(h->dev.ctx, s + PAE_S_COUNT, N_STATS_MAX - PAE_S_COUNT);
    send(h, PAE_T_STATS, 0, seq, 0, s, n);
}

static void on_obs(pae_handler* h, const pae_frame* f) {
    if (f->len != 4u * (unsigned)h->obs_dim) {
        error_reply(h, PAE_E_WRONG_SIZE, f->seq, 0);
        return;
    }
    /* Serial-number order: a seq not ahead of the last accepted one is stale or replayed. */
    if (h->have_seq && (int32_t)(f->seq - h->last_seq) <= 0) {
        error_reply(h, PAE_E_OUT_OF_ORDER, f->seq, 0);
        return;
    }
    h->have_seq = 1;
    h->last_seq = f->seq;
    for (int i = 0; i < h->obs_dim; i++)
        if (!isfinite(f->payload[i])) {
            error_reply(h, PAE_E_NONFINITE, f->seq, 0);
            return;
        }
    float act[PAE_MAX_FLOATS];
    uint32_t aux = 0;
    int late = 0;
    if (h->dev.infer(h->dev.ctx, f->seq, f->payload, act, &aux, &late) != 0) {
        error_reply(h, PAE_E_INFERENCE, f->seq, aux);
        return;
    }
    for (int i = 0; i < h->act_dim; i++)
        if (!isfinite(act[i])) {
            error_reply(h, PAE_E_INFERENCE, f->seq, aux);
            return;
        }
    if (late) {
        h->deadline_misses++;
        error_reply(h, PAE_E_DEADLINE, f->seq, aux);
        return;
    }
    h->actions++;
    send(h, PAE_T_ACTION, 0, f->seq, aux, act, (size_t)h->act_dim);
}

void pae_handler_init(pae_handler* h, const pae_device* dev, int obs_dim, int act_dim, const float* safe_action) {
    h->dev = *dev;
    h->obs_dim = obs_dim;
    h->act_dim = act_dim;
    h->safe_action = safe_action;
    pae_parser_init(&h->parser);
    h->have_seq = 0;
    h->last_seq = 0;
    h->actions = h->errors = h->deadline_misses = 0;
}

void pae_handler_take(pae_handler* h, int r, const pae_frame* f) {
    if (r == PAE_NEED_MORE) return;
    if (r != PAE_FRAME) {
        error_reply(h, r, f->seq, 0);
        return;
    }
    if (f->type == PAE_T_HELLO) {
        h->have_seq = 0;
        float info[3] = {PAE_PROTOCOL_VERSION, (float)h->obs_dim, (float)h->act_dim};
        send(h, PAE_T_HELLO, 0, f->seq, 0, info, 3);
    } else if (f->type == PAE_T_STATS) {
        on_stats(h, f->seq);
    } else if (f->type != PAE_T_OBS) {
        error_reply(h, PAE_E_BAD_TYPE, f->seq, 0);
    } else {
        on_obs(h, f);
    }
}
