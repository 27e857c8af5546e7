/* fuzz_frames.c - libFuzzer target for the frame reader (build: see tools/fuzz_frames.py build_fuzzer,
 * or: clang -g -O1 -fsanitize=fuzzer,address,undefined fuzz_frames.c frame.c -o fuzz_frames).
 *
 * The input is fed to the reader in chunks whose sizes come from the input itself, with stalls
 * (pae_parser_truncate) in between. Checked on every step, besides ASan/UBSan's memory checks:
 *   - the buffer never exceeds its capacity and the reader always makes progress,
 *   - every accepted frame re-encodes to exactly the bytes it was decoded from,
 *   - an error code is one of the protocol's, and an accepted frame's length is in bounds.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

static void check(int ok) {
    if (!ok) abort();
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
    }
    check(0); /* no progress: the reader would spin */
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static pae_parser p;
    pae_parser_init(&p);
    size_t i = 0;
    while (i < size) {
        size_t chunk = 1 + (data[i] % 61); /* chunk sizes from the data: exercises every split */
        if (chunk > size - i) chunk = size - i;
        size_t off = 0;
        while (off < chunk) {
            off += pae_parser_write(&p, data + i + off, chunk - off);
            drain(&p);
        }
        i += chunk;
        if (data[i - 1] == 0xEE) { /* a stall: the stub would truncate the pending frame */
            pae_frame f;
            int r = pae_parser_truncate(&p, &f);
            check(r == PAE_NEED_MORE || r == PAE_E_TRUNCATED);
            drain(&p);
        }
    }
    while (pae_parser_pending(&p)) {
        pae_frame f;
        check(pae_parser_truncate(&p, &f) == PAE_E_TRUNCATED);
        drain(&p);
    }
    return 0;
}
