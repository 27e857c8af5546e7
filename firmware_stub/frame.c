/* frame.c - encoder and resynchronising reader of the frame protocol (see frame.h). */
#include "frame.h"

#include <string.h>

static uint32_t crc_table[256];
static int crc_ready;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    crc_ready = 1;
}

uint32_t pae_crc32(uint32_t crc, const uint8_t* data, size_t n) {
    if (!crc_ready) crc_init();
    crc = ~crc;
    for (size_t i = 0; i < n; i++) crc = crc_table[(crc ^ data[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

static void put_u16(uint8_t* o, uint16_t v) { o[0] = (uint8_t)v; o[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t* o, uint32_t v) {
    o[0] = (uint8_t)v; o[1] = (uint8_t)(v >> 8); o[2] = (uint8_t)(v >> 16); o[3] = (uint8_t)(v >> 24);
}
static uint16_t get_u16(const uint8_t* b) { return (uint16_t)(b[0] | (b[1] << 8)); }
static uint32_t get_u32(const uint8_t* b) {
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

size_t pae_encode(uint8_t* out, size_t cap, uint8_t type, uint8_t code, uint32_t seq, uint32_t aux,
                  const float* payload, size_t n_floats) {
    if (n_floats > PAE_MAX_FLOATS) return 0;
    size_t len = 4u * n_floats, total = PAE_HEADER_BYTES + len + PAE_CRC_BYTES;
    if (cap < total) return 0;
    out[0] = PAE_MAGIC0;
    out[1] = PAE_MAGIC1;
    out[2] = type;
    out[3] = code;
    put_u32(out + 4, seq);
    put_u32(out + 8, aux);
    put_u16(out + 12, (uint16_t)len);
    for (size_t i = 0; i < n_floats; i++) {
        uint32_t bits;
        memcpy(&bits, &payload[i], 4); /* bit copy: byte order is fixed by put_u32 */
        put_u32(out + PAE_HEADER_BYTES + 4 * i, bits);
    }
    put_u32(out + PAE_HEADER_BYTES + len, pae_crc32(0, out + 2, PAE_HEADER_BYTES - 2 + len));
    return total;
}

void pae_parser_init(pae_parser* p) { memset(p, 0, sizeof *p); }

size_t pae_parser_space(const pae_parser* p) { return sizeof p->buf - p->n; }

size_t pae_parser_write(pae_parser* p, const uint8_t* data, size_t n) {
    size_t take = n < pae_parser_space(p) ? n : pae_parser_space(p);
    memcpy(p->buf + p->n, data, take);
    p->n += take;
    return take;
}

static void drop(pae_parser* p, size_t k) {
    if (k >= p->n) { p->n = 0; return; }
    memmove(p->buf, p->buf + k, p->n - k);
    p->n -= k;
}

/* Header fields as far as the buffer holds them (the caller echoes seq in an error reply). */
static void read_header(const pae_parser* p, pae_frame* out) {
    memset(out, 0, offsetof(pae_frame, payload));
    if (p->n > 2) out->type = p->buf[2];
    if (p->n > 3) out->code = p->buf[3];
    if (p->n >= 8) out->seq = get_u32(p->buf + 4);
    if (p->n >= 12) out->aux = get_u32(p->buf + 8);
    if (p->n >= PAE_HEADER_BYTES) out->len = get_u16(p->buf + 12);
}

/* Reject the candidate frame at the buffer's start: scanning restarts after its first byte. */
static int reject(pae_parser* p, int code) {
    drop(p, 1);
    p->resyncs++;
    return code;
}

int pae_parser_next(pae_parser* p, pae_frame* out) {
    size_t i = 0;
    while (i < p->n && !(p->buf[i] == PAE_MAGIC0 && (i + 1 == p->n || p->buf[i + 1] == PAE_MAGIC1))) i++;
    if (i) {
        drop(p, i);
        p->skipped_bytes += (uint32_t)i;
    }
    read_header(p, out);
    if (p->n < PAE_HEADER_BYTES) return PAE_NEED_MORE;
    /* Length is checked before waiting for the payload, so a corrupt length cannot stall us. */
    if (out->len > PAE_MAX_PAYLOAD) return reject(p, PAE_E_OVERSIZED);
    if (out->len % 4u) return reject(p, PAE_E_BAD_LENGTH);
    size_t total = PAE_HEADER_BYTES + out->len + PAE_CRC_BYTES;
    if (p->n < total) return PAE_NEED_MORE;
    uint32_t want = get_u32(p->buf + PAE_HEADER_BYTES + out->len);
    if (pae_crc32(0, p->buf + 2, PAE_HEADER_BYTES - 2 + out->len) != want) {
        p->crc_errors++;
        return reject(p, PAE_E_CRC);
    }
    for (size_t k = 0; k < out->len / 4u; k++) {
        uint32_t bits = get_u32(p->buf + PAE_HEADER_BYTES + 4 * k);
        memcpy(&out->payload[k], &bits, 4);
    }
    drop(p, total);
    p->frames_ok++;
    return PAE_FRAME;
}

int pae_parser_pending(const pae_parser* p) { return p->n > 0; }

int pae_parser_truncate(pae_parser* p, pae_frame* out) {
    read_header(p, out);
    if (p->n == 0) return PAE_NEED_MORE;
    return reject(p, PAE_E_TRUNCATED);
}

const char* pae_error_name(int code) {
    switch (code) {
        case PAE_E_NONE: return "none";
        case PAE_E_CRC: return "crc";
        case PAE_E_OVERSIZED: return "oversized";
        case PAE_E_BAD_LENGTH: return "bad_length";
        case PAE_E_WRONG_SIZE: return "wrong_size";
        case PAE_E_TRUNCATED: return "truncated";
        case PAE_E_OUT_OF_ORDER: return "out_of_order";
        case PAE_E_NONFINITE: return "nonfinite";
        case PAE_E_DEADLINE: return "deadline";
        case PAE_E_INFERENCE: return "inference";
        case PAE_E_BAD_TYPE: return "bad_type";
        case PAE_E_BAD_PART: return "bad_part";
        default: return "unknown";
    }
}
