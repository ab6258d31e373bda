// hello_c.wasm — Wisp test fixture, FunLess Wasm function ABI v1 (reactor).
//
// Input:  a JSON object, e.g. {"name":"Ada"}
// Output: {"payload":"Hello Ada!"}   ({"payload":"Hello World!"} without a
//         string-valued top-level "name" key)
//
// This is the benchmark function, so it avoids malloc and libc string helpers:
// the input is read into a static buffer (or, when larger, into freshly grown
// linear memory) and the name is located by a tiny hand-written JSON scanner.
// The name's JSON string contents are copied verbatim (escapes included), which
// keeps the output valid JSON without decoding and re-encoding.

#include <stddef.h>
#include <stdint.h>

#define IMPORT(name) __attribute__((import_module("fl_imps"), import_name(name)))

IMPORT("__get_input_data") void fl_get_input_data(uint8_t *ptr);
IMPORT("__insert_response") void fl_insert_response(const uint8_t *ptr, uint32_t len);
IMPORT("__insert_error") void fl_insert_error(const uint8_t *ptr, uint32_t len);

#define STATIC_BUF 4096

static uint8_t in_buf[STATIC_BUF];
static uint8_t out_buf[STATIC_BUF];

// grab returns n bytes of scratch space, growing linear memory when the
// static buffer is too small. Each invocation runs in a fresh instance, so
// the grown pages are never reclaimed and need not be.
static uint8_t *grab(uint8_t *static_buf, uint32_t n) {
    if (n <= STATIC_BUF) {
        return static_buf;
    }
    uint32_t pages = (n + 65535u) / 65536u;
    size_t old = __builtin_wasm_memory_grow(0, pages);
    if (old == (size_t)-1) {
        return NULL;
    }
    return (uint8_t *)(old * 65536u);
}

static int is_ws(uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// skip_string: p points just after an opening quote; returns the index of the
// closing quote (or n when unterminated). Backslash escapes skip one byte,
// which is enough to step over \" and \\ (and harmlessly over \uXXXX).
static uint32_t skip_string(const uint8_t *s, uint32_t p, uint32_t n) {
    while (p < n) {
        if (s[p] == '\\') {
            p += 2;
            continue;
        }
        if (s[p] == '"') {
            return p;
        }
        p++;
    }
    return n;
}

// find_name looks for a top-level key "name" whose value is a string and
// stores the raw (still escaped) contents in *start/*len. Returns 1 if found.
static int find_name(const uint8_t *s, uint32_t n, uint32_t *start, uint32_t *len) {
    int depth = 0;
    uint32_t p = 0;
    while (p < n) {
        uint8_t c = s[p];
        if (c == '{' || c == '[') {
            depth++;
            p++;
        } else if (c == '}' || c == ']') {
            depth--;
            p++;
        } else if (c == '"') {
            uint32_t b = p + 1;
            uint32_t e = skip_string(s, b, n);
            if (e >= n) {
                return 0;
            }
            p = e + 1;
            while (p < n && is_ws(s[p])) p++;
            if (p >= n || s[p] != ':') {
                continue; // a string value, not a key
            }
            p++;
            if (depth != 1 || e - b != 4 || s[b] != 'n' || s[b + 1] != 'a' ||
                s[b + 2] != 'm' || s[b + 3] != 'e') {
                continue;
            }
            while (p < n && is_ws(s[p])) p++;
            if (p >= n || s[p] != '"') {
                return 0; // "name" present but not a string
            }
            b = p + 1;
            e = skip_string(s, b, n);
            if (e >= n) {
                return 0;
            }
            *start = b;
            *len = e - b;
            return 1;
        } else {
            p++;
        }
    }
    return 0;
}

static uint32_t put(uint8_t *dst, uint32_t at, const char *src, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) dst[at + i] = (uint8_t)src[i];
    return at + n;
}

static const char PREFIX[] = "{\"payload\":\"Hello ";
static const char SUFFIX[] = "!\"}";
static const char WORLD[] = "World";
static const char OOM[] = "out of memory";

__attribute__((export_name("__invoke")))
int32_t invoke(int32_t input_len) {
    uint32_t n = input_len < 0 ? 0 : (uint32_t)input_len;
    uint8_t *in = grab(in_buf, n);
    if (in == NULL) {
        fl_insert_error((const uint8_t *)OOM, sizeof OOM - 1);
        return 1;
    }
    fl_get_input_data(in);

    const uint8_t *name = (const uint8_t *)WORLD;
    uint32_t name_len = sizeof WORLD - 1;
    uint32_t start, len;
    if (find_name(in, n, &start, &len)) {
        name = in + start;
        name_len = len;
    }

    uint32_t total = (sizeof PREFIX - 1) + name_len + (sizeof SUFFIX - 1);
    uint8_t *out = grab(out_buf, total);
    if (out == NULL) {
        fl_insert_error((const uint8_t *)OOM, sizeof OOM - 1);
        return 1;
    }
    uint32_t at = put(out, 0, PREFIX, sizeof PREFIX - 1);
    for (uint32_t i = 0; i < name_len; i++) out[at + i] = name[i];
    at += name_len;
    at = put(out, at, SUFFIX, sizeof SUFFIX - 1);
    fl_insert_response(out, at);
    return 0;
}
