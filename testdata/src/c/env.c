// env_c.wasm / envcmd_c.wasm — Wisp test fixtures: a function's
// configuration reaches the guest as WASI environment variables.
//
// Input:  {"name":"VAR"}   (the first string value of a key "name")
// Output: {"value":"<VAR's value, JSON-escaped>"}, or {"value":null} when
//         VAR is unset or no name was given.
//
// Built twice from this file: env_c.wasm is a FunLess ABI v1 reactor
// (wasi-libc's getenv, which reads the environment with environ_get), and
// envcmd_c.wasm (with -DWISP_COMMAND) a WASI command reading its input on
// stdin and writing the output to stdout.

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define IN_MAX 4096
#define NAME_MAX_LEN 256
#define OUT_MAX (6 * 32768 + 64)

static char in_buf[IN_MAX];
static char name[NAME_MAX_LEN + 1];
static char out_buf[OUT_MAX];

// find_name copies the string value that follows "name": into name.
static int find_name(const char *s, uint32_t n) {
    static const char key[] = "\"name\"";
    for (uint32_t i = 0; i + sizeof key - 1 < n; i++) {
        if (memcmp(s + i, key, sizeof key - 1) != 0) continue;
        uint32_t p = i + sizeof key - 1;
        while (p < n && (s[p] == ' ' || s[p] == ':')) p++;
        if (p >= n || s[p] != '"') return 0;
        p++;
        uint32_t len = 0;
        while (p < n && s[p] != '"' && len < NAME_MAX_LEN) name[len++] = s[p++];
        if (p >= n || s[p] != '"') return 0;
        name[len] = 0;
        return 1;
    }
    return 0;
}

static uint32_t put(uint32_t at, const char *s) {
    while (*s && at < OUT_MAX - 8) out_buf[at++] = *s++;
    return at;
}

// answer builds the output for input s of n bytes and returns its length.
static uint32_t answer(const char *s, uint32_t n) {
    const char *v = find_name(s, n) ? getenv(name) : NULL;
    if (v == NULL) return put(0, "{\"value\":null}");
    static const char hex[] = "0123456789abcdef";
    uint32_t at = put(0, "{\"value\":\"");
    for (; *v && at < OUT_MAX - 16; v++) {
        unsigned char c = (unsigned char)*v;
        if (c == '"' || c == '\\') {
            out_buf[at++] = '\\';
            out_buf[at++] = (char)c;
        } else if (c < 0x20) {
            at = put(at, "\\u00");
            out_buf[at++] = hex[c >> 4];
            out_buf[at++] = hex[c & 15];
        } else {
            out_buf[at++] = (char)c;
        }
    }
    return put(at, "\"}");
}

#ifdef WISP_COMMAND

int main(void) {
    uint32_t n = 0;
    for (;;) {
        ssize_t r = read(0, in_buf + n, IN_MAX - n);
        if (r <= 0) break;
        n += (uint32_t)r;
        if (n == IN_MAX) break;
    }
    uint32_t len = answer(in_buf, n);
    for (uint32_t off = 0; off < len;) {
        ssize_t w = write(1, out_buf + off, len - off);
        if (w <= 0) return 1;
        off += (uint32_t)w;
    }
    return 0;
}

#else

#define IMPORT(n) __attribute__((import_module("fl_imps"), import_name(n)))

IMPORT("__get_input_data") void fl_get_input_data(char *ptr);
IMPORT("__insert_response") void fl_insert_response(const char *ptr, uint32_t len);
IMPORT("__insert_error") void fl_insert_error(const char *ptr, uint32_t len);

__attribute__((export_name("__invoke")))
int32_t invoke(int32_t input_len) {
    static const char big[] = "input too large";
    if (input_len < 0 || input_len > IN_MAX) {
        fl_insert_error(big, sizeof big - 1);
        return 1;
    }
    fl_get_input_data(in_buf);
    fl_insert_response(out_buf, answer(in_buf, (uint32_t)input_len));
    return 0;
}

#endif
