/*
 * frame.h - the prune-and-export frame protocol, the one definition of its bytes.
 *
 * Every message between the host (plant) and the device (controller) is one frame.
 * All integers and floats are little-endian; floats are IEEE-754 binary32.
 *
 *   offset  size  field
 *   0       2     magic    0xA5 0x5A
 *   2       1     type     PAE_T_* below
 *   3       1     code     PAE_E_* error code (0 unless type == PAE_T_ERROR)
 *   4       4     seq      u32 sequence number, chosen by the host, echoed by the device
 *   8       4     aux      u32: in ACTION/ERROR replies the device compute time in ns (0 if none)
 *   12      2     len      u16 payload length in bytes: a multiple of 4, at most PAE_MAX_PAYLOAD
 *   14      len   payload  len/4 float32 values
 *   14+len  4     crc      CRC-32 (IEEE 802.3, as zlib.crc32) of bytes [2, 14+len)
 *
 * A reader looks for the magic, reads the header, and rejects the frame when len is too large or
 * not a multiple of 4 (before waiting for the payload) or when the CRC does not match. After a
 * rejected frame the reader resynchronises: it scans again from the byte after the rejected
 * frame's magic, so a good frame hidden inside the bytes of a bad one is still found.
 *
 * Exchange: the host sends OBS frames with increasing seq; the device answers each with exactly
 * one ACTION frame (the controller's action) or one ERROR frame (code says why, payload is the
 * safe action the actuator should apply). An observation of more than PAE_MAX_FLOATS floats is sent
 * as a multi-part request (protocol version 2): PART frames with one seq, each with its own CRC,
 * reassembled by the device and answered as one OBS. See PROTOCOL.md.
 *
 * This header and frame.c are plain C99 with no allocation: fixed buffers, explicit bounds.
 */
#ifndef PAE_FRAME_H
#define PAE_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PAE_PROTOCOL_VERSION 2 /* 2: multi-part requests (PAE_T_PART); version 1 frames are unchanged */
#define PAE_MAGIC0 0xA5u
#define PAE_MAGIC1 0x5Au
#define PAE_HEADER_BYTES 14u
#define PAE_CRC_BYTES 4u
#define PAE_MAX_PAYLOAD 256u /* 64 floats */
#define PAE_MAX_FLOATS (PAE_MAX_PAYLOAD / 4u)
#define PAE_MAX_FRAME (PAE_HEADER_BYTES + PAE_MAX_PAYLOAD + PAE_CRC_BYTES)

/* Frame types. */
enum {
    PAE_T_OBS = 0x01,    /* host -> device: observation (obs_dim floats) */
    PAE_T_ACTION = 0x02, /* device -> host: action (act_dim floats), seq echoed */
    PAE_T_ERROR = 0x03,  /* device -> host: code = PAE_E_*, payload = safe action, seq echoed */
    PAE_T_HELLO = 0x04,  /* host -> device: start of session (resets seq order);
                            reply HELLO with [version, obs_dim, act_dim] */
    PAE_T_STATS = 0x05,  /* host -> device: reply STATS with the PAE_S_* counters as floats */
    PAE_T_PART = 0x06    /* host -> device: one part of an observation too large for one frame; all parts
                            of a request carry its seq, aux = index | count << 16 (PAE_PART_AUX) */
};

/* aux of a PART frame: part index (0-based) in the low 16 bits, part count in the high 16 bits. */
#define PAE_PART_AUX(index, count) ((uint32_t)(index) | ((uint32_t)(count) << 16))
#define PAE_PART_INDEX(aux) ((uint32_t)(aux) & 0xFFFFu)
#define PAE_PART_COUNT(aux) ((uint32_t)(aux) >> 16)

/* Error codes carried in the code byte of an ERROR frame. */
enum {
    PAE_E_NONE = 0,
    PAE_E_CRC = 1,          /* CRC mismatch: frame dropped, reader resynchronised */
    PAE_E_OVERSIZED = 2,    /* len > PAE_MAX_PAYLOAD */
    PAE_E_BAD_LENGTH = 3,   /* len not a multiple of 4 */
    PAE_E_WRONG_SIZE = 4,   /* well-formed frame, but payload is not obs_dim floats */
    PAE_E_TRUNCATED = 5,    /* frame started but its bytes stopped coming (timeout or end of stream) */
    PAE_E_OUT_OF_ORDER = 6, /* seq not greater than the last accepted seq */
    PAE_E_NONFINITE = 7,    /* observation contains NaN or infinity */
    PAE_E_DEADLINE = 8,     /* inference took longer than the deadline: its action was discarded */
    PAE_E_INFERENCE = 9,    /* the model failed or produced a non-finite action */
    PAE_E_BAD_TYPE = 10,    /* a frame type the device does not accept */
    PAE_E_BAD_PART = 11     /* a multi-part request with a part missing, repeated, out of order or stray */
};

/* Counters reported by a STATS reply, in this order. */
enum {
    PAE_S_FRAMES_OK = 0, /* frames that passed magic, length and CRC checks */
    PAE_S_CRC_ERRORS,
    PAE_S_RESYNCS,       /* times the reader dropped a candidate frame and scanned again */
    PAE_S_SKIPPED_BYTES, /* bytes discarded while looking for the magic */
    PAE_S_ACTIONS,       /* ACTION replies sent */
    PAE_S_ERRORS,        /* ERROR replies sent */
    PAE_S_DEADLINE_MISSES,
    PAE_S_COUNT
};

/* A decoded frame. */
typedef struct {
    uint8_t type;
    uint8_t code;
    uint32_t seq;
    uint32_t aux;
    uint16_t len;                    /* payload bytes */
    float payload[PAE_MAX_FLOATS];   /* len / 4 values */
} pae_frame;

/* Result of pae_parser_next: PAE_NEED_MORE, PAE_FRAME, or a PAE_E_* code (> 0). */
#define PAE_NEED_MORE (-1)
#define PAE_FRAME 0

/* Streaming reader with a fixed buffer: append bytes, then take frames out one by one. */
typedef struct {
    uint8_t buf[2 * PAE_MAX_FRAME];
    size_t n;
    uint32_t frames_ok, crc_errors, resyncs, skipped_bytes;
} pae_parser;

uint32_t pae_crc32(uint32_t crc, const uint8_t* data, size_t n);

/* Encode a frame into out (cap bytes); returns the frame size, or 0 if it does not fit or
 * n_floats > PAE_MAX_FLOATS. */
size_t pae_encode(uint8_t* out, size_t cap, uint8_t type, uint8_t code, uint32_t seq, uint32_t aux,
                  const float* payload, size_t n_floats);

void pae_parser_init(pae_parser* p);
/* Free space for pae_parser_write. */
size_t pae_parser_space(const pae_parser* p);
/* Append up to n bytes; returns how many were taken (at most pae_parser_space). */
size_t pae_parser_write(pae_parser* p, const uint8_t* data, size_t n);
/* Take the next frame out of the buffer. On an error code, `out` holds the header fields as far
 * as they were read (type, code, seq; untrusted) so the reply can echo the seq. */
int pae_parser_next(pae_parser* p, pae_frame* out);
/* True when the buffer holds the start of a frame still waiting for bytes. */
int pae_parser_pending(const pae_parser* p);
/* The stream stalled or ended inside a frame: drop it (resync past its magic) and return
 * PAE_E_TRUNCATED with the header fields read so far in `out`, or PAE_NEED_MORE if nothing
 * was pending. */
int pae_parser_truncate(pae_parser* p, pae_frame* out);

const char* pae_error_name(int code);

#ifdef __cplusplus
}
#endif
#endif /* PAE_FRAME_H */
