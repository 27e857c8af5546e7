/*
 * frame_handler.h - what a device answers to each frame (PROTOCOL.md "Exchange" and "Errors"),
 * written once for the Linux stub (stub.cc) and the Cortex-M firmware (mcu/fw_main.c).
 *
 * The program owns the byte stream (pipes, TCP, a serial line, a UART) and the clock; it feeds
 * bytes to `h->parser` (frame.h) and hands every item the parser gives back to
 * pae_handler_take(). The handler answers:
 *   HELLO  -> HELLO [version, obs_dim, act_dim], and forgets the last seq;
 *   STATS  -> STATS with the PAE_S_* counters (then the program's extra values, if any);
 *   OBS    -> the checks below in this order, each answered by an ERROR frame carrying the safe
 *             action, else the controller's ACTION:
 *               bad_type, wrong_size, out_of_order (serial-number order), nonfinite observation,
 *               inference (the model failed), inference (non-finite action), deadline;
 *   PART   -> one part of a multi-part request (protocol version 2): parts are collected in the
 *             program's request buffer; the last one makes the request an OBS (answered as above).
 *             A pending request that a frame other than its next part cuts short (a part missing,
 *             repeated or out of order, another seq, an OBS or HELLO) is answered bad_part; a part 0
 *             then starts a new request, any other part is stray: answered bad_part, unless it is
 *             a late part of the multi-part request answered last (dropped);
 *   a reader error (crc, oversized, bad_length, truncated) -> ERROR with that code and the seq read.
 *
 * Plain C99, no allocation: the handler holds the parser and one encoded frame in fixed buffers.
 */
#ifndef PAE_FRAME_HANDLER_H
#define PAE_FRAME_HANDLER_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the handler needs from the program that runs it. */
typedef struct {
    void* ctx; /* passed back to every callback */
    /* Run the controller on obs (obs_dim floats) into act (act_dim floats). Set *aux_ns to the
     * inference time reported in the reply, and *late to nonzero if it overran the program's
     * deadline. Returns 0 on success (a failure is answered "inference"). */
    int (*infer)(void* ctx, uint32_t seq, const float* obs, float* act, uint32_t* aux_ns, int* late);
    /* Write one encoded frame to the host. */
    void (*write)(void* ctx, const uint8_t* bytes, size_t n);
    /* Optional (NULL: none): values appended to a STATS reply after the PAE_S_COUNT counters;
     * writes at most cap values into out and returns how many. */
    size_t (*extra_stats)(void* ctx, float* out, size_t cap);
} pae_device;

typedef struct {
    pae_device dev;
    int obs_dim, act_dim;      /* obs_dim 1..request_cap (or PAE_MAX_FLOATS), act_dim 1..PAE_MAX_FLOATS */
    const float* safe_action;  /* act_dim values: the payload of every ERROR reply */
    pae_parser parser;         /* the program writes received bytes here */
    int have_seq;              /* an OBS was accepted since the start or the last HELLO */
    uint32_t last_seq;
    uint32_t actions, errors, deadline_misses;
    uint8_t out[PAE_MAX_FRAME]; /* the reply being written */
    /* Multi-part requests: the program's buffer of request_cap floats (NULL, 0: parts refused). */
    float* request;
    size_t request_cap;
    size_t part_floats;        /* floats collected so far for the pending request */
    uint32_t part_seq, part_count, part_next; /* the pending request: its seq, part count, next index */
    int part_pending;          /* a request has parts collected and waits for more */
    int have_answered;         /* answered_seq is the last multi-part request answered: its late parts are dropped */
    uint32_t answered_seq;
} pae_handler;

/* Set up h for a controller of obs_dim/act_dim (parser emptied, counters zero). */
void pae_handler_init(pae_handler* h, const pae_device* dev, int obs_dim, int act_dim, const float* safe_action);
/* Give h a buffer of cap floats for multi-part requests (needed when obs_dim > PAE_MAX_FLOATS). */
void pae_handler_set_request_buffer(pae_handler* h, float* buf, size_t cap);
/* Answer one item from pae_parser_next or pae_parser_truncate: r is PAE_FRAME (f is a frame) or a
 * PAE_E_* code (f holds the header fields read, for the seq). PAE_NEED_MORE is ignored. */
void pae_handler_take(pae_handler* h, int r, const pae_frame* f);

#ifdef __cplusplus
}
#endif
#endif /* PAE_FRAME_HANDLER_H */
