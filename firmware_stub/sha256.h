/* sha256.h - SHA-256 (FIPS 180-4), to check a model library against its manifest before loading. */
#ifndef PAE_SHA256_H
#define PAE_SHA256_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
/* Write the lowercase hex digest (64 chars + NUL) of data[0..n) into hex. */
void pae_sha256_hex(const uint8_t* data, size_t n, char hex[65]);
#ifdef __cplusplus
}
#endif
#endif
