/* json_lookup.h - read a few values out of manifest.json without a JSON library. */
#ifndef PAE_JSON_LOOKUP_H
#define PAE_JSON_LOOKUP_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
/* Nonzero when text[0..n) is one well-formed JSON value (nesting at most 64 deep). */
int pae_json_valid(const char* text, size_t n);
/* Follow object keys path[0..depth) from the root; copy the string value found into out
 * (cap bytes, NUL-terminated). Returns 0 on success, -1 if missing or not a string or too long. */
int pae_json_get_string(const char* text, size_t n, const char* const* path, int depth, char* out, size_t cap);
/* The same for a number. */
int pae_json_get_number(const char* text, size_t n, const char* const* path, int depth, double* out);
/* Depth-first search for the first member named key anywhere in the document; its number. */
int pae_json_find_number(const char* text, size_t n, const char* key, double* out);
#ifdef __cplusplus
}
#endif
#endif
