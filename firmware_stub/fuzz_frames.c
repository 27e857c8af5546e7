/* fuzz_frames.c - libFuzzer target for the frame reader and the device's handler (build: see
 * tools/dev/fuzz_frames.py build_fuzzer, or:
 * clang -g -O1 -fsanitize=fuzzer,address,undefined fuzz_frames.c frame.c frame_handler.c -o fuzz_frames).
 *
 * The input is fed to the reader in chunks whose sizes come from the input itself, with stalls
 * (pae_parser_truncate) in between. Checked on every step, besides ASan/UBSan's memory checks:
 *   - the buffer never exceeds its capacity and the reader always makes progress,
 *   - every accepted frame re-encodes to exactly the bytes it was decoded from,
 *   - an error code is one of the protocol's, and an accepted frame's length is in bounds,
 *   - every item goes on to the handler (frame_handler.c) of a controller whose observation needs a
 *     multi-part request (OBS_DIM floats): each reply it writes is one whole frame with a good CRC,
 *     and the parts it has collected never exceed its request buffer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "frame_handler.h"

#define OBS_DIM 70 /* more than one frame's PAE_MAX_FLOATS: requests arrive in parts */
#define ACT_DIM 2

static void check(int ok) {
    if (!ok) abort();
}

static pae_handler h;
static float request[OBS_DIM];
static const float safe[ACT_DIM];

static int infer(void* ctx, uint32_t seq, const float* obs, float* act, uint32_t* aux_ns, int* late) {
    (void)ctx, (void)seq, (void)late;
    float s = 0;
    for (int i = 0; i < OBS_DIM; i++) s += obs[i]; /* reads the whole observation (ASan checks the bounds) */
    act[0] = s;
    act[1] = seq & 1u ? s : 0.0f;
    *aux_ns = 1;
    return 0;
}

static void reply(void* ctx, const uint8_t* bytes, size_t n) {
    (void)ctx;
    check(n >= PAE_HEADER_BYTES + PAE_CRC_BYTES && n <= PAE_MAX_FRAME);
    check(bytes[0] == PAE_MAGIC0 && bytes[1] == PAE_MAGIC1);
    size_t len = (size_t)bytes[12] | ((size_t)bytes[13] << 8);
    check(n == PAE_HEADER_BYTES + len + PAE_CRC_BYTES);
    uint32_t crc = (uint32_t)bytes[n - 4] | ((uint32_t)bytes[n - 3] << 8) | ((uint32_t)bytes[n - 2] << 16) |
                   ((uint32_t)bytes[n - 1] << 24);
    check(crc == pae_crc32(0, bytes + 2, n - 6));
}

static void take(int r, const pae_frame* f) {
    pae_handler_take(&h, r, f);
    check(h.part_floats <= h.request_cap);
}

static void drain(pae_parser* p) {
    pae_frame f;
    for (int guard = 0; guard < 4 * (int)sizeof p->buf + 8; guard++) {
        size_t before = p->n;
        uint8_t snapshot[sizeof p->buf];
        size_t snap = before;
        memcpy(snapshot, p->buf, snap);
        int r = pae_parser_next(p, &f);
        check(p->n <= sizeof p->buf);
        if (r == PAE_NEED_MORE) return;
        if (r == PAE_FRAME) {
            check(f.len <= PAE_MAX_PAYLOAD && f.len % 4 == 0);
            uint8_t again[PAE_MAX_FRAME];
            size_t len = pae_encode(again, sizeof again, f.type, f.code, f.seq, f.aux, f.payload, f.len / 4);
            check(len == PAE_HEADER_BYTES + f.len + PAE_CRC_BYTES);
            /* the frame sat at the start of the buffer after skipped bytes: find it in the snapshot */
            int found = 0;
            for (size_t off = 0; off + len <= snap && !found; off++) found = memcmp(snapshot + off, again, len) == 0;
            check(found);
        } else {
            check(r >= PAE_E_CRC && r <= PAE_E_BAD_TYPE);
            check(p->n < before); /* a rejection always consumes at least one byte */
        }
        take(r, &f);
    }
    check(0); /* no progress: the reader would spin */
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const pae_device dev = {0, infer, reply, 0};
    pae_handler_init(&h, &dev, OBS_DIM, ACT_DIM, safe);
    pae_handler_set_request_buffer(&h, request, OBS_DIM);
    pae_parser* p = &h.parser; /* the handler's own reader, as in the stub and the firmware */
    size_t i = 0;
    while (i < size) {
        size_t chunk = 1 + (data[i] % 61); /* chunk sizes from the data: exercises every split */
        if (chunk > size - i) chunk = size - i;
        size_t off = 0;
        while (off < chunk) {
            off += pae_parser_write(p, data + i + off, chunk - off);
            drain(p);
        }
        i += chunk;
        if (data[i - 1] == 0xEE) { /* a stall: the stub would truncate the pending frame */
            pae_frame f;
            int r = pae_parser_truncate(p, &f);
            check(r == PAE_NEED_MORE || r == PAE_E_TRUNCATED);
            take(r, &f);
            drain(p);
        }
    }
    while (pae_parser_pending(p)) {
        pae_frame f;
        check(pae_parser_truncate(p, &f) == PAE_E_TRUNCATED);
        take(PAE_E_TRUNCATED, &f);
        drain(p);
    }
    return 0;
}
