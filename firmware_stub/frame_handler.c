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

/* One observation (a single OBS frame's payload, or a reassembled multi-part request). */
static void on_request(pae_handler* h, uint32_t seq, const float* obs, size_t n_floats) {
    if (n_floats != (size_t)h->obs_dim) {
        error_reply(h, PAE_E_WRONG_SIZE, seq, 0);
        return;
    }
    /* Serial-number order: a seq not ahead of the last accepted one is stale or replayed. */
    if (h->have_seq && (int32_t)(seq - h->last_seq) <= 0) {
        error_reply(h, PAE_E_OUT_OF_ORDER, seq, 0);
        return;
    }
    h->have_seq = 1;
    h->last_seq = seq;
    for (int i = 0; i < h->obs_dim; i++)
        if (!isfinite(obs[i])) {
            error_reply(h, PAE_E_NONFINITE, seq, 0);
            return;
        }
    float act[PAE_MAX_FLOATS];
    uint32_t aux = 0;
    int late = 0;
    if (h->dev.infer(h->dev.ctx, seq, obs, act, &aux, &late) != 0) {
        error_reply(h, PAE_E_INFERENCE, seq, aux);
        return;
    }
    for (int i = 0; i < h->act_dim; i++)
        if (!isfinite(act[i])) {
            error_reply(h, PAE_E_INFERENCE, seq, aux);
            return;
        }
    if (late) {
        h->deadline_misses++;
        error_reply(h, PAE_E_DEADLINE, seq, aux);
        return;
    }
    h->actions++;
    send(h, PAE_T_ACTION, 0, seq, aux, act, (size_t)h->act_dim);
}

/* The multi-part request seq is answered: parts of it that still arrive are dropped without a reply. */
static void answered(pae_handler* h, uint32_t seq) {
    h->part_pending = 0;
    h->have_answered = 1;
    h->answered_seq = seq;
}

static void kill_request(pae_handler* h, int code, uint32_t seq) {
    answered(h, seq);
    error_reply(h, code, seq, 0);
}

/* A pending multi-part request that another frame cut short: answered bad_part (a part is missing). */
static void abandon_pending(pae_handler* h) {
    if (h->part_pending) kill_request(h, PAE_E_BAD_PART, h->part_seq);
}

static void on_part(pae_handler* h, const pae_frame* f) {
    uint32_t index = PAE_PART_INDEX(f->aux), count = PAE_PART_COUNT(f->aux);
    size_t n = f->len / 4u;
    int continues = h->part_pending && f->seq == h->part_seq && count == h->part_count && index == h->part_next;
    if (!continues) {
        abandon_pending(h);
        if (index != 0 || count == 0) { /* not the start of a request: a stray part */
            if (!(h->have_answered && f->seq == h->answered_seq)) kill_request(h, PAE_E_BAD_PART, f->seq);
            return; /* a late part of the request answered last: dropped */
        }
        h->part_pending = 1;
        h->part_seq = f->seq;
        h->part_count = count;
        h->part_next = 0;
        h->part_floats = 0;
    }
    if (h->request == NULL || h->part_floats + n > h->request_cap) { /* more than any observation */
        kill_request(h, PAE_E_WRONG_SIZE, f->seq);
        return;
    }
    for (size_t i = 0; i < n; i++) h->request[h->part_floats + i] = f->payload[i];
    h->part_floats += n;
    if (++h->part_next < h->part_count) return; /* more parts to come: no reply yet */
    answered(h, f->seq);
    on_request(h, f->seq, h->request, h->part_floats);
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
    h->request = NULL;
    h->request_cap = 0;
    h->part_pending = h->have_answered = 0;
    h->part_floats = 0;
    h->part_seq = h->part_count = h->part_next = h->answered_seq = 0;
}

void pae_handler_set_request_buffer(pae_handler* h, float* buf, size_t cap) {
    h->request = buf;
    h->request_cap = buf ? cap : 0;
}

void pae_handler_take(pae_handler* h, int r, const pae_frame* f) {
    if (r == PAE_NEED_MORE) return;
    if (r != PAE_FRAME) {
        error_reply(h, r, f->seq, 0);
        return;
    }
    if (f->type == PAE_T_PART) {
        on_part(h, f);
        return;
    }
    if (f->type == PAE_T_OBS || f->type == PAE_T_HELLO) abandon_pending(h); /* the pending request lost a part */
    if (f->type == PAE_T_HELLO) {
        h->have_seq = 0;
        h->have_answered = 0;
        float info[3] = {PAE_PROTOCOL_VERSION, (float)h->obs_dim, (float)h->act_dim};
        send(h, PAE_T_HELLO, 0, f->seq, 0, info, 3);
    } else if (f->type == PAE_T_STATS) {
        on_stats(h, f->seq);
    } else if (f->type != PAE_T_OBS) {
        error_reply(h, PAE_E_BAD_TYPE, f->seq, 0);
    } else {
        on_request(h, f->seq, f->payload, f->len / 4u);
    }
}
