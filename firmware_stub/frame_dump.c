/* frame_dump.c - print every event the C frame reader produces for the bytes on stdin, one per line:
 *   F <type> <code> <seq> <aux> <len> <payload crc32>    an accepted frame
 *   E <code> <seq>                                      a rejected candidate frame
 * A 0xEE byte after a chunk of 1..61 bytes (sizes from the data, as in fuzz_frames.c) is a stall:
 * the pending frame is truncated. tests/firmware/test_frames_c.py feeds the same bytes to the Python reader
 * and requires the same lines, so both sides agree on every byte. Build: cc -O2 frame_dump.c frame.c */
#include <stdio.h>
#include <stdlib.h>

#include "frame.h"

static pae_parser p;

static void report(int r, const pae_frame* f) {
    if (r == PAE_FRAME)
        printf("F %u %u %u %u %u %u\n", f->type, f->code, f->seq, f->aux, f->len,
               pae_crc32(0, (const uint8_t*)f->payload, f->len));
    else
        printf("E %d %u\n", r, f->seq);
}

static void drain(void) {
    pae_frame f;
    int r;
    while ((r = pae_parser_next(&p, &f)) != PAE_NEED_MORE) report(r, &f);
}

int main(void) {
    static uint8_t data[1 << 20];
    size_t n = fread(data, 1, sizeof data, stdin), i = 0;
    pae_parser_init(&p);
    while (i < n) {
        size_t chunk = 1 + (data[i] % 61);
        if (chunk > n - i) chunk = n - i;
        for (size_t off = 0; off < chunk;) {
            off += pae_parser_write(&p, data + i + off, chunk - off);
            drain();
        }
        i += chunk;
        if (data[i - 1] == 0xEE) {
            pae_frame f;
            int r = pae_parser_truncate(&p, &f);
            if (r != PAE_NEED_MORE) report(r, &f);
            drain();
        }
    }
    while (pae_parser_pending(&p)) {
        pae_frame f;
        report(pae_parser_truncate(&p, &f), &f);
        drain();
    }
    return 0;
}
