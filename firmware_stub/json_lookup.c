/* json_lookup.c - a strict, allocation-free JSON walker for the handful of manifest values the
 * stub needs (artifact file and sha256, obs_dim, act_dim). Keys are compared raw (no unescaping):
 * the manifest's keys are plain ASCII. */
#include "json_lookup.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

typedef struct {
    const char* p;
    const char* end;
} cur;

static void ws(cur* c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t')) c->p++;
}

/* At '"': move past the closing quote. */
static int skip_string(cur* c) {
    if (c->p >= c->end || *c->p != '"') return -1;
    for (c->p++; c->p < c->end; c->p++) {
        if (*c->p == '\\') {
            if (++c->p >= c->end) return -1;
        } else if (*c->p == '"') {
            c->p++;
            return 0;
        } else if ((unsigned char)*c->p < 0x20) {
            return -1;
        }
    }
    return -1;
}

static int skip_number(cur* c) {
    const char* s = c->p;
    while (c->p < c->end && strchr("+-0123456789.eE", *c->p)) c->p++;
    return c->p > s ? 0 : -1;
}

static int skip_literal(cur* c, const char* lit) {
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) return -1;
    c->p += n;
    return 0;
}

static int skip_value(cur* c, int depth);

static int skip_container(cur* c, int depth, char close, int is_object) {
    if (depth > MAX_DEPTH) return -1;
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) { c->p++; return 0; }
    for (;;) {
        ws(c);
        if (is_object) {
            if (skip_string(c)) return -1;
            ws(c);
            if (c->p >= c->end || *c->p != ':') return -1;
            c->p++;
        }
        if (skip_value(c, depth + 1)) return -1;
        ws(c);
        if (c->p >= c->end) return -1;
        if (*c->p == ',') { c->p++; continue; }
        if (*c->p == close) { c->p++; return 0; }
        return -1;
    }
}

static int skip_value(cur* c, int depth) {
    ws(c);
    if (c->p >= c->end) return -1;
    switch (*c->p) {
        case '{': return skip_container(c, depth, '}', 1);
        case '[': return skip_container(c, depth, ']', 0);
        case '"': return skip_string(c);
        case 't': return skip_literal(c, "true");
        case 'f': return skip_literal(c, "false");
        case 'n': return skip_literal(c, "null");
        default: return skip_number(c);
    }
}

int pae_json_valid(const char* text, size_t n) {
    cur c = {text, text + n};
    if (skip_value(&c, 0)) return 0;
    ws(&c);
    return c.p == c.end;
}

/* c at '{': leave c at the value of member `key`; -1 if absent. */
static int member(cur* c, const char* key) {
    if (c->p >= c->end || *c->p != '{') return -1;
    c->p++;
    size_t klen = strlen(key);
    for (;;) {
        ws(c);
        if (c->p >= c->end || *c->p != '"') return -1;
        const char* ks = c->p + 1;
        if (skip_string(c)) return -1;
        int match = (size_t)(c->p - 1 - ks) == klen && memcmp(ks, key, klen) == 0;
        ws(c);
        if (c->p >= c->end || *c->p != ':') return -1;
        c->p++;
        ws(c);
        if (match) return 0;
        if (skip_value(c, 1)) return -1;
        ws(c);
        if (c->p >= c->end || *c->p != ',') return -1;
        c->p++;
    }
}

static int follow(cur* c, const char* const* path, int depth) {
    ws(c);
    for (int i = 0; i < depth; i++)
        if (member(c, path[i])) return -1;
    return 0;
}

static int read_string(cur* c, char* out, size_t cap) {
    const char* s = c->p + 1;
    if (skip_string(c)) return -1;
    size_t len = (size_t)(c->p - 1 - s);
    if (len + 1 > cap || memchr(s, '\\', len)) return -1;
    memcpy(out, s, len);
    out[len] = 0;
    return 0;
}

static int read_number(cur* c, double* out) {
    char tmp[64];
    const char* s = c->p;
    if (skip_number(c) || (size_t)(c->p - s) >= sizeof tmp) return -1;
    memcpy(tmp, s, (size_t)(c->p - s));
    tmp[c->p - s] = 0;
    char* endp;
    *out = strtod(tmp, &endp);
    return *endp ? -1 : 0;
}

int pae_json_get_string(const char* text, size_t n, const char* const* path, int depth, char* out, size_t cap) {
    if (!pae_json_valid(text, n)) return -1;
    cur c = {text, text + n};
    if (follow(&c, path, depth) || c.p >= c.end || *c.p != '"') return -1;
    return read_string(&c, out, cap);
}

int pae_json_get_number(const char* text, size_t n, const char* const* path, int depth, double* out) {
    if (!pae_json_valid(text, n)) return -1;
    cur c = {text, text + n};
    if (follow(&c, path, depth)) return -1;
    return read_number(&c, out);
}

/* Depth-first: returns 1 when found (out set), 0 when not, -1 on malformed input. */
static int find(cur* c, const char* key, double* out, int depth) {
    ws(c);
    if (depth > MAX_DEPTH || c->p >= c->end) return -1;
    if (*c->p != '{' && *c->p != '[') return skip_value(c, depth) ? -1 : 0;
    int is_object = *c->p == '{';
    char close = is_object ? '}' : ']';
    size_t klen = strlen(key);
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) { c->p++; return 0; }
    for (;;) {
        int match = 0;
        ws(c);
        if (is_object) {
            const char* ks = c->p + 1;
            if (skip_string(c)) return -1;
            match = (size_t)(c->p - 1 - ks) == klen && memcmp(ks, key, klen) == 0;
            ws(c);
            if (c->p >= c->end || *c->p != ':') return -1;
            c->p++;
            ws(c);
        }
        if (match && c->p < c->end && *c->p != '{' && *c->p != '[' && *c->p != '"') return read_number(c, out) ? -1 : 1;
        int r = find(c, key, out, depth + 1);
        if (r) return r;
        ws(c);
        if (c->p >= c->end) return -1;
        if (*c->p == ',') { c->p++; continue; }
        if (*c->p == close) { c->p++; return 0; }
        return -1;
    }
}

int pae_json_find_number(const char* text, size_t n, const char* key, double* out) {
    if (!pae_json_valid(text, n)) return -1;
    cur c = {text, text + n};
    return find(&c, key, out, 0) == 1 ? 0 : -1;
}
